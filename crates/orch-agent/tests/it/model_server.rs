//! A scripted model endpoint on loopback, enough of the Anthropic Messages API, of the OpenAI
//! Responses API, of the OpenAI Chat Completions API and of the Gemini API (`generateContent`)
//! for the real CLIs to do one thing: write a file through their own tool (or, for aider, in its
//! whole-file edit format), then finish.
//! Hand-written HTTP/1.1: one request per connection, answered with `Connection: close`.
//!
//! The tool call is answered to a request that offers tools and carries no tool result yet; the
//! closing message to one that carries the result. Anything else (model listings, token counts,
//! side queries) gets a harmless answer that reports no tokens. Every request line is kept, so a
//! failing test can show what the CLI asked for.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the model makes the CLI do.
#[derive(Debug, Clone)]
pub struct Script {
    /// Absolute, for Claude Code's `Write` tool.
    pub file_path: String,
    /// For Codex: a shell command, run in the worktree, that writes the file.
    pub command: String,
    /// For aider: the file's path relative to the worktree, as its edit format names files.
    pub relative_path: String,
    pub content: String,
}

/// The tokens the server reported, summed over its scripted answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reported {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub reasoning: u64,
}

/// Token counts of the two scripted answers: (input, output, cache read, cache write/reasoning).
const FIRST: (u64, u64, u64, u64) = (123, 45, 7, 11);
const SECOND: (u64, u64, u64, u64) = (200, 30, 0, 0);
/// Token counts of the one Chat Completions answer: (prompt, completion).
const CHAT: (u64, u64) = (321, 54);

#[derive(Debug, Default)]
struct State {
    requests: Vec<String>,
    bodies: Vec<String>,
    reported: Reported,
    /// Answer every model call with this HTTP error status instead.
    fail_with: Option<u16>,
}

#[derive(Debug)]
pub struct ModelServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ModelServer {
    pub async fn start(script: Script) -> Self {
        Self::start_with(script, None).await
    }

    /// A server that answers every model call with the HTTP error `status`, in the error shape
    /// the OpenAI, Anthropic and Gemini APIs share (`error.message`, `error.code`, `error.type`).
    pub async fn failing(script: Script, status: u16) -> Self {
        Self::start_with(script, Some(status)).await
    }

    async fn start_with(script: Script, fail_with: Option<u16>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            fail_with,
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (state, script) = (Arc::clone(&shared), script.clone());
                tokio::spawn(async move { serve(socket, &state, &script).await });
            }
        });
        Self { url, state, task }
    }

    /// Every request line seen, such as `POST /v1/messages?beta=true`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().expect("lock").requests.clone()
    }

    /// Whether some request's body holds `text` (JSON-escaped as it would be there).
    pub fn saw(&self, text: &str) -> bool {
        let escaped = Value::from(text).to_string();
        let escaped = escaped.trim_matches('"');
        let state = self.state.lock().expect("lock");
        state.bodies.iter().any(|body| body.contains(escaped))
    }

    pub fn reported(&self) -> Reported {
        self.state.lock().expect("lock").reported
    }
}

struct Request {
    line: String,
    body: Value,
}

async fn serve(socket: TcpStream, state: &Mutex<State>, script: &Script) {
    let mut socket = BufReader::new(socket);
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    eprintln!("model server: {}", request.line);
    let fail_with = state.lock().expect("lock").fail_with;
    let (status, (content_type, body)) = match fail_with {
        Some(code) if request.line.starts_with("POST ") => (code, failure(code)),
        _ => (200, answer(&request, state, script)),
    };
    {
        let mut state = state.lock().expect("lock");
        state.requests.push(request.line);
        state.bodies.push(request.body.to_string());
    }
    let head = format!(
        "HTTP/1.1 {status} Scripted\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let socket = socket.get_mut();
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}

async fn read_request(socket: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    socket.read_line(&mut line).await.ok()?;
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut header = String::new();
        socket.read_line(&mut header).await.ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().ok()?,
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-encoding" => eprintln!("model server: body encoded with {value}"),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(socket).await?
    } else {
        let mut body = vec![0; length];
        socket.read_exact(&mut body).await.ok()?;
        body
    };
    Some(Request {
        line: line.trim_end().to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

async fn read_chunked(socket: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        socket.read_line(&mut size).await.ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0; size + 2];
        socket.read_exact(&mut chunk).await.ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

fn failure(status: u16) -> (&'static str, String) {
    json_answer(json!({ "type": "error", "error": {
        "code": status, "type": "invalid_request_error", "status": "INVALID_ARGUMENT",
        "message": "the scripted model refuses this request" } }))
}

fn answer(request: &Request, state: &Mutex<State>, script: &Script) -> (&'static str, String) {
    let path = request.line.split(' ').nth(1).unwrap_or("");
    let body = &request.body;
    let text = body.to_string();
    let streamed = body["stream"] == true;
    if path.starts_with("/v1/messages/count_tokens") {
        return json_answer(json!({ "input_tokens": 1 }));
    }
    if path.starts_with("/v1/messages") {
        let offers_write = body["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().any(|t| t["name"] == "Write"));
        let last = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(Value::to_string)
            .unwrap_or_default();
        return if !streamed {
            json_answer(anthropic::plain_message("ok"))
        } else if last.contains("\"tool_result\"") {
            count(state, Api::Anthropic, SECOND);
            sse(anthropic::text_stream("The analysis is written.", SECOND))
        } else if offers_write {
            count(state, Api::Anthropic, FIRST);
            let input = json!({ "file_path": script.file_path, "content": script.content });
            sse(anthropic::write_stream(&input, FIRST))
        } else {
            sse(anthropic::text_stream("ok", (0, 0, 0, 0)))
        };
    }
    if path.starts_with("/v1/responses") {
        return if text.contains("\"function_call_output\"") {
            count(state, Api::OpenAi, SECOND);
            sse(openai::message_stream("The analysis is written.", SECOND))
        } else if text.contains("exec_command") {
            count(state, Api::OpenAi, FIRST);
            sse(openai::exec_stream(&script.command, FIRST))
        } else {
            sse(openai::message_stream("ok", (0, 0, 0, 0)))
        };
    }
    if path.starts_with("/v1/chat/completions") {
        let offers_write = body["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().any(|t| t["function"]["name"] == "write"));
        let last_role = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .map(|m| m["role"].clone());
        // OpenCode (streamed, with tools): a `write` call, then a closing message. aider
        // (not streamed, as orch runs it, no tools): the file in its whole-file edit format.
        // Anything else streamed (OpenCode's session title): a short text of no tokens.
        return if last_role.as_ref().is_some_and(|r| r == "tool") {
            count(state, Api::OpenAi, SECOND);
            chat::stream(chat::text_delta("The analysis is written."), "stop", SECOND)
        } else if offers_write {
            count(state, Api::OpenAi, FIRST);
            let args = json!({ "filePath": script.file_path, "content": script.content });
            chat::stream(chat::call_delta("write", &args), "tool_calls", FIRST)
        } else if !streamed {
            count(state, Api::OpenAi, (CHAT.0, CHAT.1, 0, 0));
            let content = chat::whole_file_edit(&script.relative_path, &script.content);
            json_answer(chat::completion(&content, CHAT))
        } else {
            chat::stream(chat::text_delta("Scripted analysis"), "stop", (0, 0, 0, 0))
        };
    }
    if path.starts_with("/v1beta/models/") {
        let (events, tokens) = if text.contains("\"functionResponse\"") {
            (gemini::text("The analysis is written.", SECOND), SECOND)
        } else if text.contains("\"functionDeclarations\"") && path.contains(":stream") {
            let args = json!({ "file_path": script.file_path, "content": script.content });
            (gemini::call("write_file", &args, FIRST), FIRST)
        } else {
            // Side queries (which speaker is next, loop checks...): an answer of no tokens.
            (
                gemini::text("{\"next_speaker\": \"user\"}", (0, 0, 0, 0)),
                (0, 0, 0, 0),
            )
        };
        count(state, Api::OpenAi, (tokens.0, tokens.1, tokens.2, 0));
        return if path.contains("alt=sse") {
            ("text/event-stream", format!("data: {events}\n\n"))
        } else {
            json_answer(events)
        };
    }
    if path.starts_with("/v1/models") {
        return json_answer(json!({ "object": "list", "data": [], "models": [] }));
    }
    json_answer(json!({}))
}

#[derive(Clone, Copy)]
enum Api {
    Anthropic,
    OpenAi,
}

/// Adds an answer's tokens; the fourth number is cache writes for Anthropic, reasoning for OpenAI.
fn count(
    state: &Mutex<State>,
    api: Api,
    (input, output, cache_read, fourth): (u64, u64, u64, u64),
) {
    let mut state = state.lock().expect("lock");
    let r = &mut state.reported;
    r.input += input;
    r.output += output;
    r.cache_read += cache_read;
    match api {
        Api::Anthropic => r.cache_write += fourth,
        Api::OpenAi => r.reasoning += fourth,
    }
}

fn json_answer(value: Value) -> (&'static str, String) {
    ("application/json", value.to_string())
}

fn sse(events: Vec<Value>) -> (&'static str, String) {
    let body = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect();
    ("text/event-stream", body)
}

mod anthropic {
    use serde_json::{Value, json};

    fn start(usage: (u64, u64, u64, u64)) -> Value {
        let (input, _, cache_read, cache_write) = usage;
        json!({ "type": "message_start", "message": {
            "id": "msg_scripted", "type": "message", "role": "assistant", "model": "claude-scripted",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": input, "output_tokens": 1,
                       "cache_read_input_tokens": cache_read,
                       "cache_creation_input_tokens": cache_write } } })
    }

    fn end(stop_reason: &str, output: u64) -> [Value; 2] {
        [
            json!({ "type": "message_delta", "delta": { "stop_reason": stop_reason, "stop_sequence": null },
                    "usage": { "output_tokens": output } }),
            json!({ "type": "message_stop" }),
        ]
    }

    pub fn write_stream(input: &Value, usage: (u64, u64, u64, u64)) -> Vec<Value> {
        let mut events = vec![
            start(usage),
            json!({ "type": "content_block_start", "index": 0, "content_block":
                    { "type": "tool_use", "id": "toolu_scripted", "name": "Write", "input": {} } }),
            json!({ "type": "content_block_delta", "index": 0, "delta":
                    { "type": "input_json_delta", "partial_json": input.to_string() } }),
            json!({ "type": "content_block_stop", "index": 0 }),
        ];
        events.extend(end("tool_use", usage.1));
        events
    }

    pub fn text_stream(text: &str, usage: (u64, u64, u64, u64)) -> Vec<Value> {
        let mut events = vec![
            start(usage),
            json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } }),
            json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": text } }),
            json!({ "type": "content_block_stop", "index": 0 }),
        ];
        events.extend(end("end_turn", usage.1));
        events
    }

    pub fn plain_message(text: &str) -> Value {
        json!({ "id": "msg_side", "type": "message", "role": "assistant", "model": "claude-scripted",
                "content": [{ "type": "text", "text": text }], "stop_reason": "end_turn",
                "stop_sequence": null, "usage": { "input_tokens": 0, "output_tokens": 0 } })
    }
}

mod openai {
    use serde_json::{Value, json};

    fn response(status: &str, output: &[Value], usage: Option<(u64, u64, u64, u64)>) -> Value {
        let mut response = json!({ "id": "resp_scripted", "object": "response", "status": status,
                                   "model": "gpt-scripted", "output": output });
        if let Some((input, output, cached, reasoning)) = usage {
            response["usage"] = json!({
                "input_tokens": input, "input_tokens_details": { "cached_tokens": cached },
                "output_tokens": output, "output_tokens_details": { "reasoning_tokens": reasoning },
                "total_tokens": input + output });
        }
        response
    }

    fn around(item: Value, usage: (u64, u64, u64, u64), middle: Vec<Value>) -> Vec<Value> {
        let mut events = vec![
            json!({ "type": "response.created", "response": response("in_progress", &[], None) }),
            json!({ "type": "response.output_item.added", "output_index": 0, "item": item }),
        ];
        events.extend(middle);
        events
            .push(json!({ "type": "response.output_item.done", "output_index": 0, "item": item }));
        events.push(json!({ "type": "response.completed",
                            "response": response("completed", &[item], Some(usage)) }));
        events
    }

    pub fn exec_stream(command: &str, usage: (u64, u64, u64, u64)) -> Vec<Value> {
        let arguments = json!({ "cmd": command }).to_string();
        let item = json!({ "type": "function_call", "id": "fc_scripted", "call_id": "call_scripted",
                           "name": "exec_command", "arguments": arguments, "status": "completed" });
        around(item, usage, Vec::new())
    }

    pub fn message_stream(text: &str, usage: (u64, u64, u64, u64)) -> Vec<Value> {
        let item = json!({ "type": "message", "id": "msg_scripted", "role": "assistant", "status": "completed",
                           "content": [{ "type": "output_text", "text": text, "annotations": [] }] });
        let delta = json!({ "type": "response.output_text.delta", "item_id": "msg_scripted",
                            "output_index": 0, "content_index": 0, "delta": text });
        around(item, usage, vec![delta])
    }
}

/// The Chat Completions API, as aider's model client (litellm, with the OpenAI client) calls it.
mod chat {
    use serde_json::{Value, json};

    /// An answer in aider's "whole" edit format: the file's path, then its whole new content in a
    /// fenced block.
    pub fn whole_file_edit(path: &str, content: &str) -> String {
        format!("{path}\n```\n{content}```\n")
    }

    fn usage((prompt, completion): (u64, u64)) -> Value {
        json!({ "prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion })
    }

    pub fn completion(content: &str, tokens: (u64, u64)) -> Value {
        json!({ "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0,
                "model": "scripted-model",
                "choices": [{ "index": 0, "finish_reason": "stop",
                              "message": { "role": "assistant", "content": content } }],
                "usage": usage(tokens) })
    }

    pub fn text_delta(text: &str) -> Value {
        json!({ "role": "assistant", "content": text })
    }

    pub fn call_delta(name: &str, args: &Value) -> Value {
        json!({ "role": "assistant", "tool_calls": [{ "index": 0, "id": "call_scripted",
                "type": "function", "function": { "name": name, "arguments": args.to_string() } }] })
    }

    /// Server-sent chunks: the delta, the finish reason, a usage chunk (the prompt tokens include
    /// the cached ones, as OpenAI counts them), then `[DONE]`.
    pub fn stream(
        delta: Value,
        finish: &str,
        (prompt, completion, cached, _): (u64, u64, u64, u64),
    ) -> (&'static str, String) {
        let chunk = |choices: Value, usage: Value| {
            json!({ "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
                    "model": "scripted-model", "choices": choices, "usage": usage })
        };
        let mut total = usage((prompt, completion));
        total["prompt_tokens_details"] = json!({ "cached_tokens": cached });
        let events = [
            chunk(
                json!([{ "index": 0, "delta": delta, "finish_reason": null }]),
                Value::Null,
            ),
            chunk(
                json!([{ "index": 0, "delta": {}, "finish_reason": finish }]),
                Value::Null,
            ),
            chunk(json!([]), total),
        ];
        let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        body.push_str("data: [DONE]\n\n");
        ("text/event-stream", body)
    }
}
/// The Gemini API's `GenerateContentResponse`, as the Gemini CLI's client (`@google/genai`) reads
/// it, streamed or not.
mod gemini {
    use serde_json::{Value, json};

    fn response(parts: Value, (input, output, cached, _): (u64, u64, u64, u64)) -> Value {
        json!({ "candidates": [{ "index": 0, "finishReason": "STOP",
                                 "content": { "role": "model", "parts": parts } }],
                "usageMetadata": { "promptTokenCount": input, "candidatesTokenCount": output,
                                   "cachedContentTokenCount": cached,
                                   "totalTokenCount": input + output },
                "modelVersion": "scripted-model" })
    }

    pub fn call(name: &str, args: &Value, usage: (u64, u64, u64, u64)) -> Value {
        response(
            json!([{ "functionCall": { "name": name, "args": args } }]),
            usage,
        )
    }

    pub fn text(text: &str, usage: (u64, u64, u64, u64)) -> Value {
        response(json!([{ "text": text }]), usage)
    }
}
