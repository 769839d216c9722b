//! NDJSON in, enriched NDJSON out: one line per input line, in order.
//!
//! A reader task turns the input into lines on a channel; the batcher takes
//! up to `batch_size` of them, but never waits more than `linger` for a batch
//! to fill, so a slow stream (stdin from a shipper, a followed file) still
//! flows. Each batch goes through the component's `enrich-batch`, which
//! looks up every new address of the batch in one MISP request.
//!
//! Lines that are not UTF-8 cannot cross the WIT `string` boundary; they are
//! written back unchanged, like any other record the component cannot read.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use misp_enrich::settings::{FieldPath, RecordSettings};
use misp_enrich::splice::Located;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::runtime::{Enricher, HostError};
use crate::summary::Summary;

pub mod follow;

/// How records are grouped.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// The most records per `enrich-batch` call. Bounds the memory of one
    /// call and the size of one MISP request.
    pub batch_size: usize,
    /// The longest a partial batch waits for more lines.
    pub linger: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        // 500 records hold at most a few dozen distinct addresses in honeypot
        // traffic (94-98% repeats), a small request for MISP; 100 ms keeps a
        // trickling stream moving without calling the component per line.
        Batching { batch_size: 500, linger: Duration::from_millis(100) }
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("reading input: {0}")]
    Read(std::io::Error),
    #[error("writing output: {0}")]
    Write(std::io::Error),
    #[error(transparent)]
    Host(#[from] HostError),
}

/// A line of input, or the error that ended the input.
pub type Line = Result<Vec<u8>, std::io::Error>;

/// Reads `input` line by line on a task of its own.
pub fn read_lines<R: AsyncRead + Unpin + Send + 'static>(input: R) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(async move {
        let mut reader = BufReader::new(input);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    if tx.send(Ok(line)).await.is_err() {
                        return;
                    }
                }
                Err(err) => {
                    let _ = tx.send(Err(err)).await;
                    return;
                }
            }
        }
    });
    rx
}

/// Where input lines come from.
#[derive(Debug, Clone)]
pub enum Input {
    Stdin,
    File(PathBuf),
    /// A file followed like `tail -F`, surviving rotation, until stopped.
    Follow(PathBuf, follow::StopFlag),
}

impl Input {
    /// Opens the input and starts reading it.
    pub async fn open(&self) -> std::io::Result<mpsc::Receiver<Line>> {
        match self {
            Input::Stdin => Ok(read_lines(tokio::io::stdin())),
            Input::File(path) => Ok(read_lines(tokio::fs::File::open(path).await?)),
            Input::Follow(path, stop) => follow::follow(path.clone(), stop.clone()),
        }
    }
}

/// Called after each batch with the number of records written so far.
pub type Progress<'a> = &'a mut (dyn FnMut(u64) + Send);

/// Enriches every line from `lines` onto `output` and reports the run.
///
/// Limitation: a trap inside the component (a bug, not bad input: the
/// component passes unreadable records through) ends the run with an error
/// after the batches already written; the instance cannot be entered again
/// after a trap, and silently restarting it would reset its cache and
/// counters.
pub async fn run<W: AsyncWrite + Unpin>(
    enricher: &mut Enricher,
    mut lines: mpsc::Receiver<Line>,
    output: W,
    batching: Batching,
    source_fields: &[String],
    progress: Progress<'_>,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let mut output = tokio::io::BufWriter::new(output);
    let sourcing = RecordSettings {
        source_fields: source_fields.iter().map(|f| FieldPath::new(f)).collect(),
        ..RecordSettings::default()
    };
    let mut sources = HashSet::new();
    let mut records = 0u64;

    while let Some(batch) = next_batch(&mut lines, batching).await {
        let batch = batch.map_err(PipelineError::Read)?;
        records += batch.len() as u64;
        let enriched = enrich(enricher, batch, &sourcing, &mut sources).await?;
        for line in enriched {
            output.write_all(&line).await.map_err(PipelineError::Write)?;
            output.write_all(b"\n").await.map_err(PipelineError::Write)?;
        }
        // Flushed per batch, so a followed stream is written as it arrives.
        output.flush().await.map_err(PipelineError::Write)?;
        progress(records);
    }

    let stats = enricher.stats().await?;
    Ok(Summary { records, distinct_sources: sources.len(), stats, elapsed: started.elapsed() })
}

/// Waits for one line, then takes more until the batch is full, the input
/// pauses for `linger`, or it ends. `None` once the input is exhausted.
async fn next_batch(
    lines: &mut mpsc::Receiver<Line>,
    batching: Batching,
) -> Option<Result<Vec<Vec<u8>>, std::io::Error>> {
    let first = lines.recv().await?;
    let mut batch = match first {
        Ok(line) => vec![line],
        Err(err) => return Some(Err(err)),
    };
    let deadline = tokio::time::Instant::now() + batching.linger;
    while batch.len() < batching.batch_size {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(Ok(line))) => batch.push(line),
            Ok(Some(Err(err))) => return Some(Err(err)),
            Ok(None) | Err(_) => break,
        }
    }
    Some(Ok(batch))
}

/// Sends the UTF-8 lines of a batch through the component and puts the
/// others back in their places.
async fn enrich(
    enricher: &mut Enricher,
    batch: Vec<Vec<u8>>,
    sourcing: &RecordSettings,
    sources: &mut HashSet<IpAddr>,
) -> Result<Vec<Vec<u8>>, HostError> {
    let mut texts = Vec::with_capacity(batch.len());
    let mut slots = Vec::with_capacity(batch.len());
    for line in batch {
        match String::from_utf8(line) {
            Ok(text) => {
                if let Some(addr) = source_of(&text, sourcing) {
                    sources.insert(addr);
                }
                slots.push(None);
                texts.push(text);
            }
            Err(err) => slots.push(Some(err.into_bytes())),
        }
    }
    let changes = enricher.enrich_changes(&texts).await?;
    // Records the component left alone are written from the line as read.
    let mut enriched = texts.into_iter().zip(changes).map(|(text, change)| change.unwrap_or(text));
    Ok(slots
        .into_iter()
        .map(|slot| slot.unwrap_or_else(|| enriched.next().unwrap_or_default().into_bytes()))
        .collect())
}

/// The record's source address, found the way the component finds it: the
/// first field holding an address, flat dotted key or nested path. The
/// scanner answers for looked-up records without a parse; the rest (private
/// sources, records it cannot judge) are parsed.
fn source_of(text: &str, sourcing: &RecordSettings) -> Option<IpAddr> {
    match misp_enrich::splice::locate(text, sourcing) {
        Located::Append { addr, .. } => Some(addr),
        Located::Skip | Located::Unknown => misp_enrich::record::find_source(
            &misp_enrich::record::parse(text)?,
            &sourcing.source_fields,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_is_found_flat_nested_and_mapped() {
        let of = |t: &str| source_of(t, &RecordSettings::default()).map(|a| a.to_string());
        assert_eq!(of(r#"{"src_ip":"::ffff:45.133.1.7"}"#).unwrap(), "45.133.1.7");
        assert_eq!(of(r#"{"source.address":"45.133.1.8"}"#).unwrap(), "45.133.1.8");
        assert_eq!(of(r#"{"source":{"address":"45.133.1.9"}}"#).unwrap(), "45.133.1.9");
        assert_eq!(of(r#"{"honeypot":{"src_ip":"45.133.1.10"}}"#).unwrap(), "45.133.1.10");
        assert_eq!(of(r#"{"dst_ip":"45.133.1.7"}"#), None);
        assert_eq!(of("not json"), None);
        // Sources that are not looked up still count: the parser finds them.
        assert_eq!(of(r#"{"src_ip":"10.0.0.1"}"#).unwrap(), "10.0.0.1");
        assert_eq!(of(r#"{"tags":[],"src_ip":"45.133.1.11"}"#).unwrap(), "45.133.1.11");
    }

    #[tokio::test]
    async fn batches_fill_up_to_the_size() {
        let (tx, mut rx) = mpsc::channel(16);
        for i in 0..5u8 {
            tx.send(Ok(vec![i])).await.unwrap();
        }
        drop(tx);
        let batching = Batching { batch_size: 2, linger: Duration::from_secs(5) };
        let sizes: Vec<usize> = {
            let mut sizes = Vec::new();
            while let Some(batch) = next_batch(&mut rx, batching).await {
                sizes.push(batch.unwrap().len());
            }
            sizes
        };
        assert_eq!(sizes, [2, 2, 1]);
    }

    #[tokio::test]
    async fn a_paused_stream_flushes_a_partial_batch() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(Ok(b"a".to_vec())).await.unwrap();
        let batching = Batching { batch_size: 100, linger: Duration::from_millis(20) };
        let batch = next_batch(&mut rx, batching).await.unwrap().unwrap();
        assert_eq!(batch, vec![b"a".to_vec()]);
        drop(tx);
    }
}
