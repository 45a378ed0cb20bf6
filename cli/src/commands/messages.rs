use anyhow::{bail, Result};
use serde_json::Value;

use crate::args::MessagesArgs;
use crate::output::{self, short_id, text, time};
use comity_client::Client;

/// Page size of `--all` (the API's largest).
const ALL_PAGE: usize = 1000;

/// `s` as a URL query value.
fn query_value(s: &str) -> String {
    comity_client::upload::percent_encode(s)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `--since`: a date (UTC midnight), a time ago (`90s`, `30m`, `24h`,
/// `7d`) or milliseconds since the epoch; as milliseconds since the epoch.
fn since_ms(when: &str, now_ms: u64) -> Result<u64> {
    let when = when.trim();
    if !when.is_empty() && when.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(when.parse()?);
    }
    if let Ok(date) = when.parse::<comity_protocol::message::Date>() {
        let days = days_from_civil(
            i64::from(date.year()),
            i64::from(date.month()),
            i64::from(date.day()),
        );
        return Ok(u64::try_from(days)? * 86_400_000);
    }
    let unit = |c: char| match c {
        's' => Some(1_000u64),
        'm' => Some(60_000),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        _ => None,
    };
    if let Some((n, u)) = when
        .char_indices()
        .last()
        .and_then(|(i, c)| Some((when[..i].parse::<u64>().ok()?, unit(c)?)))
    {
        return Ok(now_ms.saturating_sub(n.saturating_mul(u)));
    }
    bail!("--since {when:?}: give a date (2027-01-31), a time ago (90s, 30m, 24h, 7d) or milliseconds since the epoch")
}

/// `GET /v1/messages` with the filters of `args` (without the cursor).
fn list_path(args: &MessagesArgs, limit: Option<usize>, now_ms: u64) -> Result<String> {
    let mut q = Vec::new();
    if args.inbox {
        q.push("box=inbox".to_string());
    } else if args.outbox {
        q.push("box=outbox".to_string());
    }
    for (name, value) in [
        ("peer", &args.peer),
        ("kind", &args.kind),
        ("state", &args.state),
    ] {
        if let Some(v) = value {
            q.push(format!("{name}={}", query_value(v)));
        }
    }
    if let Some(w) = &args.since {
        q.push(format!("since={}", since_ms(w, now_ms)?));
    }
    if let Some(n) = limit {
        q.push(format!("limit={n}"));
    }
    if args.newest {
        q.push("order=newest".into());
    }
    Ok(if q.is_empty() {
        "/v1/messages".into()
    } else {
        format!("/v1/messages?{}", q.join("&"))
    })
}

fn with_cursor(path: &str, after: Option<&str>) -> String {
    match after {
        None => path.to_string(),
        Some(c) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}after={}", query_value(c))
        }
    }
}

fn row(m: &Value) -> Vec<String> {
    vec![
        text(&m["id"]),
        if m["direction"] == "inbound" {
            "in"
        } else {
            "out"
        }
        .to_string(),
        text(&m["kind"]),
        short_id(&m["peer"]),
        text(&m["state"]),
        time(&m["created_at"]),
        text(&m["subject"]),
    ]
}

pub fn list(client: &Client, args: &MessagesArgs) -> Result<()> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let path = list_path(
        args,
        if args.all { Some(ALL_PAGE) } else { args.limit },
        now_ms,
    )?;
    let mut after = args.after.clone();
    let mut rows = Vec::new();
    let mut first = true;
    if args.json {
        print!("[");
    }
    loop {
        let (v, next) = client.get_page(&with_cursor(&path, after.as_deref()))?;
        let page = v.as_array().map(|a| a.as_slice()).unwrap_or_default();
        if args.json {
            // One array, whatever the number of pages, printed as it comes.
            for m in page {
                if !first {
                    print!(",");
                }
                first = false;
                print!("{m}");
            }
        } else {
            rows.extend(page.iter().map(row));
        }
        match next {
            Some(c) if args.all => after = Some(c),
            Some(c) => {
                if args.json {
                    println!("]");
                } else {
                    print_rows(&rows);
                }
                eprintln!(
                    "comity: more messages: add --after {c} for the next page, or --all for every one"
                );
                return Ok(());
            }
            None => break,
        }
    }
    if args.json {
        println!("]");
    } else {
        print_rows(&rows);
    }
    Ok(())
}

fn print_rows(rows: &[Vec<String>]) {
    output::table(
        &["id", "dir", "kind", "peer", "state", "created", "subject"],
        rows,
    );
}

pub fn show(client: &Client, id: &str, json: bool) -> Result<()> {
    let m = client.get(&super::MessageArg::parse(id)?.path("/v1/messages", ""))?;
    if json {
        output::json(&m);
        return Ok(());
    }
    let b = &m["body"];
    let dir = if m["direction"] == "inbound" {
        "from"
    } else {
        "to"
    };
    println!(
        "{} {}  ({dir} {})",
        text(&m["kind"]),
        text(&m["id"]),
        text(&m["peer"])
    );
    println!("state:       {}", text(&m["state"]));
    println!("created:     {}", time(&m["created_at"]));
    if !m["received_at"].is_null() {
        println!("received:    {}", time(&m["received_at"]));
    }
    if !m["delivered_at"].is_null() {
        println!("delivered:   {}", time(&m["delivered_at"]));
    }
    if let Some(e) = m["last_error"].as_str() {
        println!("last error:  {e}");
    }
    if let Some(r) = m["resent_as"].as_str() {
        println!("resent as:   {r}");
    }
    if let Some(o) = m["resend_of"].as_str() {
        println!("resend of:   {o}");
    }
    println!("envelope:    {}", text(&m["envelope_digest"]));
    println!(
        "receipt:     {}",
        if m["receipt"].is_string() {
            "held (signed by the recipient)"
        } else {
            "none yet"
        }
    );
    for (label, key) in [
        ("type", "request_type"),
        ("legal basis", "legal_basis"),
        ("urgency", "urgency"),
        ("deadline", "deadline"),
        ("language", "language"),
    ] {
        if !b[key].is_null() {
            println!("{:<12} {}", format!("{label}:"), text(&b[key]));
        }
    }
    if b["offence"].is_object() {
        println!(
            "offence:     {} (ICCS {})",
            text(&b["offence"]["description"]),
            text(&b["offence"]["iccs"])
        );
    }
    show_restrictions(&b["restrictions"]);
    if b["status"].is_object() {
        println!(
            "status:      {} regarding {}",
            text(&b["status"]["status"]),
            text(&b["regarding"])
        );
    }
    if let Some(s) = b["subject"].as_str() {
        println!("subject:     {s}");
    }
    if let Some(text) = b["body"].as_str() {
        println!("\n{text}\n");
    }
    let attachments = m["attachments"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default();
    if !attachments.is_empty() {
        println!("attachments (read one out with `comity attachment get {id} NAME --out PATH`):");
        super::attachments::print_table(attachments);
    }
    let history = m["history"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default();
    if !history.is_empty() {
        println!("history:");
        for h in history {
            let s = &h["status"];
            let detail = ["reference", "grounds", "details", "reason", "until"]
                .iter()
                .filter_map(|k| s[*k].as_str().map(|v| format!("{k}: {v}")))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "  {}  {:<30} by {:<4} {}{}",
                time(&h["at"]),
                text(&s["status"]),
                text(&h["from"]),
                detail,
                h["note"]
                    .as_str()
                    .map(|n| format!("  note: {n}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn show_restrictions(r: &Value) {
    if !r.is_object() {
        return;
    }
    if r["confidential"] == true {
        println!("RESTRICTION: confidential (UNCAC art. 46(5)): keep it, and the fact it was received, confidential");
    }
    for u in r["use_restrictions"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
    {
        println!("RESTRICTION on use: {}", text(u));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_dates_times_ago_and_milliseconds() {
        let now = 1_795_363_031_329;
        assert_eq!(since_ms("1795363031329", now).unwrap(), 1_795_363_031_329);
        // 2026-11-22 00:00:00Z (output::time of 1_795_348_800_000 is 12:00).
        assert_eq!(since_ms("2026-11-22", now).unwrap(), 1_795_305_600_000);
        assert_eq!(since_ms("1970-01-01", now).unwrap(), 0);
        assert_eq!(since_ms("30m", now).unwrap(), now - 30 * 60_000);
        assert_eq!(since_ms("7d", now).unwrap(), now - 7 * 86_400_000);
        assert!(since_ms("yesterday", now).is_err());
        assert!(since_ms("7w", now).is_err());
        assert!(since_ms("", now).is_err());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("BO"), "BO");
        assert_eq!(query_value("ab cd&x=1"), "ab%20cd%26x%3D1");
        assert_eq!(
            with_cursor("/v1/messages", Some("1.2")),
            "/v1/messages?after=1.2"
        );
        assert_eq!(
            with_cursor("/v1/messages?limit=5", Some("1.2")),
            "/v1/messages?limit=5&after=1.2"
        );
    }
}
