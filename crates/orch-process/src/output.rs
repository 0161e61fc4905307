//! A child's output with bounded memory: lines cut at 64 KiB, a capped log file, a short tail.

use std::collections::VecDeque;
use std::path::Path;

use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, BufWriter};

use crate::ProcessError;
use crate::spec::Stream;

/// The longest line kept; the rest of a longer line is dropped as it arrives.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;
const LINE_CUT_MARK: &str = "…[line cut]";
const TAIL_LINES: usize = 40;
const TAIL_BYTES: usize = 8 * 1024;
const STDERR_PREFIX: &str = "[stderr] ";

/// What one read of a stream gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// A complete line (or the unterminated last one at end of stream).
    Line(String),
    /// Bytes of a line not yet complete: the child is alive and printing.
    Partial,
}

/// Splits a byte stream into lines without ever holding more than one capped line.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    line: Vec<u8>,
    cut: bool,
    done: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner: BufReader::new(inner),
            line: Vec::new(),
            cut: false,
            done: false,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The next chunk, or `None` at end of stream (a read error counts as the end).
    ///
    /// Cancel-safe, so it can race in `select!`: the only await is `fill_buf`, and the state
    /// changes only after it returned.
    pub(crate) async fn next(&mut self) -> Option<Chunk> {
        if self.done {
            return None;
        }
        let available = match self.inner.fill_buf().await {
            Ok(bytes) => bytes,
            Err(_) => &[],
        };
        if available.is_empty() {
            self.done = true;
            let pending = !self.line.is_empty() || self.cut;
            return pending.then(|| Chunk::Line(self.take_line()));
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(end) => {
                append_capped(&mut self.line, &mut self.cut, &available[..end]);
                self.inner.consume(end + 1);
                Some(Chunk::Line(self.take_line()))
            }
            None => {
                let len = available.len();
                append_capped(&mut self.line, &mut self.cut, available);
                self.inner.consume(len);
                Some(Chunk::Partial)
            }
        }
    }

    fn take_line(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.line);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        if std::mem::take(&mut self.cut) {
            line.push_str(LINE_CUT_MARK);
        }
        line
    }
}

fn append_capped(line: &mut Vec<u8>, cut: &mut bool, bytes: &[u8]) {
    let room = MAX_LINE_BYTES.saturating_sub(line.len());
    if bytes.len() > room {
        *cut = true;
    }
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Where the lines of a run go: the log file (capped) and the tail.
#[derive(Debug)]
pub(crate) struct Transcript {
    log: Option<CappedLog>,
    tail: VecDeque<String>,
    tail_bytes: usize,
}

impl Transcript {
    /// Opens (appending, creating its directory) the log file if there is one.
    pub(crate) async fn open(log: Option<&Path>, cap_bytes: u64) -> Result<Self, ProcessError> {
        let log = match log {
            Some(path) => Some(CappedLog::open(path, cap_bytes).await?),
            None => None,
        };
        Ok(Self {
            log,
            tail: VecDeque::new(),
            tail_bytes: 0,
        })
    }

    pub(crate) async fn record(&mut self, stream: Stream, line: &str) {
        let entry = match stream {
            Stream::Stdout => line.to_owned(),
            Stream::Stderr => format!("{STDERR_PREFIX}{line}"),
        };
        if let Some(log) = &mut self.log {
            log.append(&entry).await;
        }
        self.push_tail(entry);
    }

    /// Flushes the log and returns the tail, oldest line first.
    pub(crate) async fn finish(mut self) -> String {
        if let Some(log) = &mut self.log {
            log.flush().await;
        }
        self.tail.into_iter().collect::<Vec<_>>().join("\n")
    }

    fn push_tail(&mut self, mut entry: String) {
        if entry.len() > TAIL_BYTES {
            entry.truncate(floor_char_boundary(
                &entry,
                TAIL_BYTES - LINE_CUT_MARK.len(),
            ));
            entry.push_str(LINE_CUT_MARK);
        }
        self.tail_bytes += entry.len();
        self.tail.push_back(entry);
        while self.tail.len() > TAIL_LINES || self.tail_bytes > TAIL_BYTES {
            match self.tail.pop_front() {
                Some(old) => self.tail_bytes -= old.len(),
                None => break,
            }
        }
    }
}

/// A log file that stops growing at its cap with one line saying so.
#[derive(Debug)]
struct CappedLog {
    file: BufWriter<File>,
    path: std::path::PathBuf,
    remaining: u64,
    cap_bytes: u64,
    /// Set once the cap was reached or a write failed: nothing more is written.
    closed: bool,
}

impl CappedLog {
    async fn open(path: &Path, cap_bytes: u64) -> Result<Self, ProcessError> {
        let fail = |source| ProcessError::Log {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(fail)?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(fail)?;
        Ok(Self {
            file: BufWriter::new(file),
            path: path.to_owned(),
            remaining: cap_bytes,
            cap_bytes,
            closed: false,
        })
    }

    async fn append(&mut self, entry: &str) {
        if self.closed {
            return;
        }
        let needed = entry.len() as u64 + 1;
        if needed > self.remaining {
            self.closed = true;
            let mark = format!("[log truncated at {}]\n", human_size(self.cap_bytes));
            self.write(mark.as_bytes()).await;
            return;
        }
        self.remaining -= needed;
        self.write(entry.as_bytes()).await;
        self.write(b"\n").await;
        // Line by line, so `orch logs -f` and a person tailing the file see output as it comes.
        self.flush().await;
    }

    async fn write(&mut self, bytes: &[u8]) {
        if let Err(error) = self.file.write_all(bytes).await {
            // The run goes on without its log rather than failing over a full disk.
            tracing::warn!(path = %self.path.display(), %error, "cannot write the run log; logging stops");
            self.closed = true;
        }
    }

    async fn flush(&mut self) {
        if let Err(error) = self.file.flush().await {
            tracing::warn!(path = %self.path.display(), %error, "cannot flush the run log");
        }
    }
}

fn human_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// The largest char boundary of `s` at or below `index`.
fn floor_char_boundary(s: &str, index: usize) -> usize {
    let mut i = index.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn chunks(input: &[u8]) -> Vec<Chunk> {
        let mut reader = LineReader::new(input);
        let mut out = Vec::new();
        while let Some(chunk) = reader.next().await {
            out.push(chunk);
        }
        assert!(reader.is_done());
        out
    }

    fn lines(chunks: Vec<Chunk>) -> Vec<String> {
        chunks
            .into_iter()
            .filter_map(|c| match c {
                Chunk::Line(l) => Some(l),
                Chunk::Partial => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn splits_lines_strips_crlf_and_keeps_an_unterminated_last_line() {
        assert_eq!(
            lines(chunks(b"one\r\ntwo\n\nlast").await),
            ["one", "two", "", "last"]
        );
        assert_eq!(lines(chunks(b"").await), Vec::<String>::new());
    }

    #[tokio::test]
    async fn decodes_invalid_utf8_lossily() {
        assert_eq!(lines(chunks(b"\xffok\n").await), ["\u{fffd}ok"]);
    }

    #[tokio::test]
    async fn cuts_a_line_longer_than_the_cap_and_resumes_after_it() {
        let mut input = vec![b'a'; MAX_LINE_BYTES * 3];
        input.extend_from_slice(b"\nnext\n");
        let got = lines(chunks(&input).await);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            format!("{}{LINE_CUT_MARK}", "a".repeat(MAX_LINE_BYTES))
        );
        assert_eq!(got[1], "next");
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_cap_is_not_cut() {
        let mut input = vec![b'b'; MAX_LINE_BYTES];
        input.push(b'\n');
        assert_eq!(lines(chunks(&input).await), ["b".repeat(MAX_LINE_BYTES)]);
    }

    #[tokio::test]
    async fn tail_keeps_the_last_forty_lines_and_marks_stderr() {
        let mut transcript = Transcript::open(None, 0).await.expect("no log to open");
        for i in 0..100 {
            transcript
                .record(Stream::Stdout, &format!("line {i}"))
                .await;
        }
        transcript.record(Stream::Stderr, "oops").await;
        let tail = transcript.finish().await;
        let tail: Vec<&str> = tail.lines().collect();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line 61");
        assert_eq!(tail[TAIL_LINES - 1], "[stderr] oops");
    }

    #[tokio::test]
    async fn tail_stays_within_its_byte_budget() {
        let mut transcript = Transcript::open(None, 0).await.expect("no log to open");
        let wide = "é".repeat(MAX_LINE_BYTES / 2);
        for _ in 0..3 {
            transcript.record(Stream::Stdout, &wide).await;
        }
        let tail = transcript.finish().await;
        assert!(tail.len() <= TAIL_BYTES, "{}", tail.len());
        assert!(tail.ends_with(LINE_CUT_MARK));
    }

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_size(20 * 1024 * 1024), "20 MiB");
        assert_eq!(human_size(1000), "1000 bytes");
    }
}
