//! [`verify_bundle`]: reads the input in batches of lines, parses them on
//! worker threads and feeds the results to the [`Assembler`].

use std::io::{self, BufRead, Read as _};
use std::sync::{mpsc, Arc, Mutex};

use super::parse::{process_batch, Batch, BatchOut, LineState, Scratch};
use super::verify::Assembler;
use super::{Report, VerifyOptions, MAX_LINE_BYTES};

/// Lines handed to a worker at once.
const BATCH_LINES: usize = 4096;
/// Bytes of lines handed to a worker at once.
const BATCH_BYTES: usize = 4 << 20;

/// Verifies a bundle read from `reader` and reports every problem found.
///
/// Only reading can fail (`Err`); everything wrong with the content is a
/// [`Finding`](super::Finding) in the report. Uses
/// [`VerifyOptions::threads`] workers to parse and hash entries; memory is
/// about 64 bytes per entry (the tree).
pub fn verify_bundle<R: BufRead>(reader: R, options: &VerifyOptions) -> io::Result<Report> {
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.threads
    }
    .clamp(1, 64);
    let mut assembler = Assembler::new();
    let (work_tx, work_rx) = mpsc::sync_channel::<Batch>(threads * 2);
    // Shared by the workers only: if they all stopped, sending fails
    // instead of blocking for ever.
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::channel::<BatchOut>();
    std::thread::scope(|s| -> io::Result<()> {
        for _ in 0..threads {
            let rx = Arc::clone(&work_rx);
            let tx = done_tx.clone();
            s.spawn(move || {
                let mut scratch = Scratch::default();
                loop {
                    let next = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(batch) = next else { return };
                    if tx.send(process_batch(batch, &mut scratch)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        drop(work_rx);
        let read = read_batches(reader, |batch| {
            let sent = work_tx.send(batch).is_ok();
            while let Ok(out) = done_rx.try_recv() {
                assembler.accept(out);
            }
            sent
        });
        drop(work_tx);
        for out in done_rx {
            assembler.accept(out);
        }
        read
    })?;
    Ok(assembler.finish(options))
}

/// Splits the input into batches of whole lines, each line bounded.
fn read_batches<R: BufRead>(mut reader: R, mut send: impl FnMut(Batch) -> bool) -> io::Result<()> {
    let mut no = 0u64;
    let mut line_no = 0u64;
    loop {
        let mut batch = Batch {
            no,
            first_line: line_no + 1,
            buf: Vec::with_capacity(BATCH_BYTES / 4),
            lines: Vec::with_capacity(BATCH_LINES),
        };
        let mut eof = false;
        while batch.lines.len() < BATCH_LINES && batch.buf.len() < BATCH_BYTES {
            let start = batch.buf.len();
            let n = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut batch.buf)?;
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            if batch.buf.last() == Some(&b'\n') {
                let end = batch.buf.len() - 1;
                batch.lines.push((start, end, LineState::Complete));
            } else if n > MAX_LINE_BYTES {
                batch.buf.truncate(start);
                reader.skip_until(b'\n')?;
                batch.lines.push((start, start, LineState::TooLong));
            } else {
                let end = batch.buf.len();
                batch.lines.push((start, end, LineState::NoFinalNewline));
            }
        }
        if !batch.lines.is_empty() && !send(batch) {
            return Ok(());
        }
        if eof {
            return Ok(());
        }
        no += 1;
    }
}
