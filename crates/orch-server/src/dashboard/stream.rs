//! `/items/{id}/log/stream`: the live agent log as server-sent events.
//!
//! The stream follows the log file of the item's current run: it first sends
//! the last [`START_BYTES`] of the file, then every new complete line as it appears, polling the
//! file every [`POLL`]. When the run is over and the file has nothing more, it sends an `end`
//! event and closes. Memory is bounded: at most [`CHUNK_BYTES`] are read per poll, and a line
//! longer than that is sent in pieces.
//!
//! Events: `message` (data: one or more log lines), `run` (data: `stage attempt`, sent first),
//! `end` (data: the run's final state, or `server stopping` when the server shuts down).

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use orch_store::{RunRecord, RunState};

use super::access;
use super::item::find_item;
use crate::state::AppState;

/// How much of an existing log the stream starts with.
pub(crate) const START_BYTES: u64 = 64 * 1024;
/// The most read from the file per poll.
pub(crate) const CHUNK_BYTES: usize = 64 * 1024;
/// Why a read-only dashboard shows no log, artifact text or diff.
pub(crate) const HIDDEN: &str = "this read-only dashboard shows no agent logs, artifact text or \
     diffs; log in, or let the operator set [server] public_content = true";

/// How often the file and the run are looked at.
const POLL: Duration = Duration::from_millis(300);

pub(crate) async fn log_stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    match access(&state, &headers).await {
        Err(refused) => return refused.into_response(),
        // The log may hold what the agent read; a read-only dashboard shows it only by choice.
        Ok(a) if !a.shows_content() => {
            return super::HtmlError(crate::error::ApiError::Forbidden(HIDDEN.into()))
                .into_response();
        }
        Ok(_) => {}
    }
    let item = match find_item(&state, &id).await {
        Ok(item) => item,
        Err(e) => return e.into_response(),
    };
    let mut runs = match state.engine().store().list_runs(&item.id).await {
        Ok(runs) => runs,
        Err(e) => return super::HtmlError::from(e).into_response(),
    };
    let project = match state.engine().project(&item.project) {
        Ok(p) => p,
        Err(e) => return super::HtmlError::from(e).into_response(),
    };
    // The current run: the latest one still going, else the latest that wrote a log (an
    // approval waiting for a person writes none; its item's last agent log is shown instead).
    runs.sort_by_key(|r| r.id);
    let current = runs.into_iter().rev().find_map(|run| {
        let path = project.run_log(&item.id, run.stage.as_str(), run.attempt);
        (is_going(run.state) || path.is_file()).then_some((run, path))
    });
    let Some((run, path)) = current else {
        let done = stream::iter([Ok::<_, Infallible>(
            Event::default().event("end").data("no runs yet"),
        )]);
        return Sse::new(done).into_response();
    };
    // The log is read below the data directory without following a link (an agent could
    // replace its log with one to `/proc/self/environ`).
    let root = project.settings.data_dir.clone();
    let Some(rel) = path.strip_prefix(&root).ok().map(PathBuf::from) else {
        let done = stream::iter([Ok::<_, Infallible>(
            Event::default()
                .event("end")
                .data("the log is not in the data directory"),
        )]);
        return Sse::new(done).into_response();
    };
    Sse::new(tail(state, run, root, rel))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Where a tail stands.
struct Tail {
    state: AppState,
    run: RunRecord,
    /// orch's data directory, and the log's path below it.
    root: PathBuf,
    rel: PathBuf,
    /// Bytes of the file already read.
    offset: u64,
    /// The end of a line whose newline has not been written yet.
    partial: Vec<u8>,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Follow,
    Ended,
}

fn tail(
    state: AppState,
    run: RunRecord,
    root: PathBuf,
    rel: PathBuf,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = Tail {
        state,
        run,
        root,
        rel,
        offset: 0,
        partial: Vec::new(),
        phase: Phase::Start,
    };
    stream::unfold(start, |mut t| async move {
        match t.phase {
            Phase::Ended => None,
            Phase::Start => {
                let size = std::fs::symlink_metadata(t.root.join(&t.rel)).map_or(0, |m| m.len());
                t.offset = size.saturating_sub(START_BYTES);
                t.phase = Phase::Follow;
                let label = format!("{} {}", t.run.stage, t.run.attempt);
                Some((Ok(Event::default().event("run").data(label)), t))
            }
            Phase::Follow => loop {
                // Whether the run is over is asked before reading, so whatever it wrote before
                // it ended is read before the stream ends.
                let ended = t.run_ended().await;
                if let Some(lines) = t.read_lines() {
                    return Some((Ok(Event::default().data(lines)), t));
                }
                if let Some(end) = ended {
                    if !t.partial.is_empty() {
                        let rest = std::mem::take(&mut t.partial);
                        let text = String::from_utf8_lossy(&rest).into_owned();
                        return Some((Ok(Event::default().data(text)), t));
                    }
                    t.phase = Phase::Ended;
                    return Some((Ok(Event::default().event("end").data(end.as_str())), t));
                }
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = t.state.shutting_down().cancelled() => {
                        t.phase = Phase::Ended;
                        return Some((Ok(Event::default().event("end").data("server stopping")), t));
                    }
                }
            },
        }
    })
}

impl Tail {
    /// New complete lines of the file, at most [`CHUNK_BYTES`] of them; `None` when there are
    /// none (or the file is not there yet).
    fn read_lines(&mut self) -> Option<String> {
        let read = |offset| {
            orch_process::safe_file::read_regular_from(&self.root, &self.rel, offset, CHUNK_BYTES)
                .ok()
        };
        let (mut chunk, mut size) = read(self.offset)?;
        if size < self.offset {
            // The file was replaced (the run restarted after a crash): start it again.
            self.offset = 0;
            self.partial.clear();
            (chunk, size) = read(0)?;
        }
        if size == self.offset {
            return None;
        }
        let chunk = std::mem::take(&mut chunk.bytes);
        self.offset += chunk.len() as u64;
        self.partial.extend_from_slice(&chunk);
        let cut = match self.partial.iter().rposition(|b| *b == b'\n') {
            Some(newline) => newline + 1,
            // No newline in a whole chunk: send it as it is rather than hold it.
            None if self.partial.len() >= CHUNK_BYTES => self.partial.len(),
            None => return None,
        };
        let lines: Vec<u8> = self.partial.drain(..cut).collect();
        let text = String::from_utf8_lossy(&lines);
        Some(text.trim_end_matches('\n').to_owned())
    }

    /// The run's final state once it is no longer going; a store error ends the stream too.
    async fn run_ended(&mut self) -> Option<RunState> {
        if !is_going(self.run.state) {
            return Some(self.run.state);
        }
        match self.state.engine().store().get_run(self.run.id).await {
            Ok(Some(run)) => {
                self.run.state = run.state;
                (!is_going(run.state)).then_some(run.state)
            }
            Ok(None) | Err(_) => Some(RunState::Cancelled),
        }
    }
}

/// Whether a run in `state` may still write to its log. A waiting run (an approval) has no
/// agent, so it writes nothing.
fn is_going(state: RunState) -> bool {
    matches!(state, RunState::Queued | RunState::Running)
}
