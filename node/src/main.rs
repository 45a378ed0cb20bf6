//! `comityd`: a Comity node in the foreground. SIGTERM or SIGINT stops it
//! gracefully (stop accepting, answer what is held, flush, exit 0).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::Parser;
use comity_config::{Config, LogFormat};
use comity_node::reopens::ReopenBackoff;
use comity_node::shutdown::Shutdown;
use comity_node::store::StoreError;
use comity_node::{Node, StartError};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

mod daemon_args;
use daemon_args::Args;

fn main() -> ExitCode {
    comity_node::malloc::limit_arenas();
    comity_node::files::restrict_umask();
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("comityd: {}: {e}", args.config.display());
            return ExitCode::from(1);
        }
    };
    let json = match args.log_format.as_deref() {
        None => config.log.format == LogFormat::Json,
        Some("json") => true,
        Some("text") => false,
        Some(other) => {
            eprintln!("comityd: --log-format must be text or json, not {other:?}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log.level, json);
    if args.check {
        // A token is checked without logging in: the start logs in, and
        // each login with a wrong PIN counts towards locking it.
        if let Some(token) = &config.node.identity_token {
            let checked = comity_token::check_without_login(token)
                .map_err(anyhow::Error::from)
                .and_then(|()| {
                    Ok(comity_config::node_id_in_key_file(
                        &config.node.identity_key,
                    )?)
                });
            return match checked {
                Ok(id) => {
                    println!("configuration and keys are valid; node id {id}");
                    println!(
                        "identity key on the PKCS#11 token {:?}: present and not locked; the PIN is read, not tried (the start logs in)",
                        token.token
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("comityd: {e:#}");
                    exit_code(&e)
                }
            };
        }
        return match comity_config::load_key_file(&config.node.identity_key) {
            Ok(identity) => {
                println!(
                    "configuration and keys are valid; node id {}",
                    identity.id()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("comityd: {e}");
                ExitCode::from(1)
            }
        };
    }
    // Set when this process image replaced one whose store could not be
    // released (see `reexec`); read before any other thread exists.
    let reopened = std::env::var(REOPENED_AFTER).ok();
    let backoff = std::env::var(REOPEN_BACKOFF).ok();
    std::env::remove_var(REOPENED_AFTER);
    std::env::remove_var(REOPEN_BACKOFF);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("comityd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(config, args.config, reopened, backoff));
    // A thread blocked in a stuck flush must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("comityd: {e:#}");
            exit_code(&e)
        }
    }
}

/// 3 when the identity key's token refused the PIN, or says it is locked
/// or on its last try (the unit does not
/// restart then: every try would count against the token's PIN, which
/// locks after a few), 1 for any other failure.
fn exit_code(e: &anyhow::Error) -> ExitCode {
    let pin_refused = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<comity_token::TokenError>(),
            Some(comity_token::TokenError::PinRefused(_) | comity_token::TokenError::PinLocked(_))
        )
    });
    ExitCode::from(if pin_refused { 3 } else { 1 })
}

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COMITY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(
    mut config: Config,
    config_path: PathBuf,
    mut reopened: Option<String>,
    backoff: Option<String>,
) -> anyhow::Result<()> {
    for o in config.env_overrides() {
        info!(
            variable = o.var,
            key = o.key,
            "configuration overridden by the environment"
        );
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // A re-executed image goes on with the backoff of the one before it.
    let mut backoff = match (&reopened, backoff) {
        (None, _) => ReopenBackoff::default(),
        (Some(_), Some(text)) => ReopenBackoff::from_env(&text).unwrap_or_else(|e| {
            warn!(error = %e, "{REOPEN_BACKOFF} unreadable; assuming a reopen just now");
            ReopenBackoff::unknown(SystemTime::now())
        }),
        (Some(_), None) => ReopenBackoff::unknown(SystemTime::now()),
    };
    // A re-executed image that still finds its store locked does not try
    // again: another process holds it.
    let mut may_reexec = reopened.is_none();
    loop {
        if reopened.is_some() {
            tokio::select! {
                _ = wait_before_reopening(&mut backoff) => {}
                _ = term.recv() => return stopped_while_reopening("SIGTERM"),
                _ = int.recv() => return stopped_while_reopening("SIGINT"),
            }
        }
        let socket = config.node.admin_socket.clone();
        let metrics_listen = config.node.metrics_listen;
        let listener = comity_node::admin::bind(&socket)?;
        let node = Arc::new(match &reopened {
            None => Node::start(config).await?,
            Some(fault) => match start_reopened(config, fault, &mut term, &mut int).await {
                Some(Ok(n)) => n,
                None => return Ok(()),
                // A thread of the old store still holds it (see `reexec`).
                Some(Err(StartError::Store(StoreError::Locked { .. }))) if may_reexec => {
                    return Err(reexec(fault, &backoff))
                }
                Some(Err(e)) => return Err(e.into()),
            },
        });
        let admin_stop = Shutdown::new();
        let metrics = metrics_listen.map(|addr| {
            let node = node.clone();
            let stop = admin_stop.signal();
            tokio::spawn(async move {
                if let Err(e) = comity_node::metrics::serve(node, addr, stop).await {
                    error!("metrics listener on {addr}: {e}");
                }
            })
        });
        let mut admin = tokio::spawn(comity_node::admin::serve(
            node.clone(),
            listener,
            socket,
            Some(config_path.clone()),
            admin_stop.signal(),
        ));

        let ended = tokio::select! {
            _ = term.recv() => { info!("SIGTERM received"); Ended::Signal }
            _ = int.recv() => { info!("SIGINT received"); Ended::Signal }
            r = &mut admin => Ended::Admin(r),
            fault = node.reopen_wanted() => Ended::Reopen(fault.reason),
        };
        admin_stop.trigger();
        let (admin_error, reopen) = match ended {
            Ended::Admin(r) => (
                Some(r.map_err(|e| anyhow::anyhow!("admin API task: {e}"))?.err()).flatten(),
                None,
            ),
            Ended::Signal => (admin.await.ok().and_then(Result::err), None),
            Ended::Reopen(reason) => (admin.await.ok().and_then(Result::err), Some(reason)),
        };
        if let Some(mut m) = metrics {
            // A scraper's connection that never closes must not hold up a
            // stop or a reopen.
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut m)
                .await
                .is_err()
            {
                m.abort();
                let _ = m.await;
            }
        }
        let Some(reason) = reopen else {
            node.shutdown().await?;
            return match admin_error {
                Some(e) => Err(e.into()),
                None => Ok(()),
            };
        };
        // The store could not write and the disk has room again: stop
        // everything, release the store, and start again from disk as at
        // start-up (see the node library's `recovery`).
        warn!(%reason, "reopening the node after its store could not write");
        let watchdog = CloseWatchdog::start(&reason, &backoff);
        tokio::select! {
            r = close(node, &reason, &backoff) => r?,
            _ = term.recv() => return stopped_while_reopening("SIGTERM"),
            _ = int.recv() => return stopped_while_reopening("SIGINT"),
        }
        drop(watchdog);
        config = Config::load(&config_path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
        reopened = Some(reason);
        may_reexec = true;
    }
}

/// [`Node::start_reopened`], or `None` after a stop asked for meanwhile
/// (its bind may wait up to 30 s for the old endpoint's port).
async fn start_reopened(
    config: Config,
    fault: &str,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> Option<Result<Node, StartError>> {
    let signal = tokio::select! {
        r = Node::start_reopened(config, fault) => return Some(r),
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let _ = stopped_while_reopening(signal);
    None
}

/// A stop asked for while the node was being reopened: the store is
/// closed (or held by a blocked thread), nothing more to do.
fn stopped_while_reopening(signal: &str) -> anyhow::Result<()> {
    info!("{signal} received while reopening the store; stopping");
    Ok(())
}

enum Ended {
    Signal,
    Admin(Result<Result<(), comity_node::admin::SocketError>, tokio::task::JoinError>),
    Reopen(String),
}

/// Stops `node` and releases its store, once the admin API and metrics
/// tasks have let go of it.
async fn close(node: Arc<Node>, reason: &str, backoff: &ReopenBackoff) -> anyhow::Result<()> {
    let mut node = node;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let node = loop {
        match Arc::try_unwrap(node) {
            Ok(n) => break n,
            Err(shared) if tokio::time::Instant::now() < deadline => {
                node = shared;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(_) => return Err(reexec(reason, backoff)),
        }
    };
    // On a thread of its own: dropping the last handle on a faulted sled
    // database may block in its final flush, and must not block a worker
    // of the runtime (the timeout below would never fire).
    let runtime = tokio::runtime::Handle::current();
    let closing = tokio::task::spawn_blocking(move || runtime.block_on(node.close()));
    match tokio::time::timeout(std::time::Duration::from_secs(30), closing).await {
        Ok(Ok(Ok(()))) => Ok(()),
        // Expected: the last flush fails on the disk that failed. What was
        // not flushed was never acknowledged.
        Ok(Ok(Err(e))) => {
            warn!(error = %e, "closing the faulted store");
            Ok(())
        }
        Ok(Err(e)) => {
            warn!(error = %e, "closing the faulted store failed");
            Err(reexec(reason, backoff))
        }
        Err(_) => Err(reexec(reason, backoff)),
    }
}

/// Waits as `backoff` says before a reopen (see `comity_node::reopens`).
async fn wait_before_reopening(backoff: &mut ReopenBackoff) {
    let delay = backoff.next(SystemTime::now());
    if !delay.is_zero() {
        info!(?delay, "reopened recently; waiting before reopening again");
        tokio::time::sleep(delay).await;
    }
}

/// Re-executes `comityd` from a thread of its own if closing the faulted
/// node has not finished in time. The timeouts in [`close`] need the
/// runtime, and a thread blocked in a sled write (sled 0.34 can wait
/// forever for a log buffer whose write failed) can take every worker:
/// seen as a close that never ended.
struct CloseWatchdog(Arc<std::sync::atomic::AtomicBool>);

impl CloseWatchdog {
    const GRACE: std::time::Duration = std::time::Duration::from_secs(45);

    fn start(reason: &str, backoff: &ReopenBackoff) -> CloseWatchdog {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, reason, backoff) = (done.clone(), reason.to_string(), *backoff);
        let spawned = std::thread::Builder::new()
            .name("close-watchdog".into())
            .spawn(move || {
                std::thread::sleep(Self::GRACE);
                if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                    let e = reexec(&reason, &backoff);
                    eprintln!("comityd: {e:#}");
                    std::process::exit(1);
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the close watchdog");
        }
        CloseWatchdog(done)
    }
}

impl Drop for CloseWatchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The environment variable that tells a re-executed `comityd` why.
const REOPENED_AFTER: &str = "COMITYD_REOPENED_AFTER";
/// And the one that carries its reopen backoff (`ReopenBackoff::to_env`).
const REOPEN_BACKOFF: &str = "COMITYD_REOPEN_BACKOFF";

/// Replaces this process with a fresh `comityd` of the same arguments: the
/// same PID, so the service manager sees no restart. For a store that was
/// not released: sled 0.34 can block forever in a flush after a failed
/// write, and the blocked thread keeps the database locked; only a new
/// process image lets go of it. Returns only if the exec failed.
fn reexec(reason: &str, backoff: &ReopenBackoff) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    warn!("the store was not released; re-executing comityd to reopen it");
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "comityd".into());
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(REOPENED_AFTER, reason)
        .env(REOPEN_BACKOFF, backoff.to_env())
        .exec();
    anyhow::anyhow!("cannot re-execute comityd to reopen its store: {err}")
}
