//! A scripted OpenAI-compatible chat server for tests, on std alone: it listens on
//! 127.0.0.1 (a free port), serves `POST /v1/chat/completions` over HTTP/1.1 keep-alive, one
//! thread per connection, and answers each request as the test's handler says: a chat
//! completion with some content, any status and headers, a body that is not a completion,
//! a delay first, or a dropped connection. Shared by the tests of lamoda-llm, lamoda-curation,
//! the server, predict-tags and xtask (`#[path]`).
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// 0-based, in arrival order.
    pub n: usize,
    /// The user message (`messages[0].content`).
    pub prompt: String,
    /// The whole JSON body.
    pub body: serde_json::Value,
    /// The `Authorization` header.
    pub authorization: Option<String>,
}

/// How to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with a chat completion whose message content is this.
    Content(String),
    /// Any status, extra headers and body.
    Status(u16, Vec<(String, String)>, String),
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
    /// Close the connection without answering.
    Drop,
}

impl Reply {
    /// 200 with `{"tags": [...]}` as the content.
    pub fn tags(tags: &[&str]) -> Reply {
        Reply::Content(serde_json::json!({ "tags": tags }).to_string())
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running server (it lives until the test process ends).
pub struct ChatServer {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl ChatServer {
    /// Starts a server answering with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> ChatServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let addr = listener.local_addr().expect("local address");
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        ChatServer { addr, requests }
    }

    /// The base URL to give the client (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("request log").clone()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.requests.lock().expect("request log").len()
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Request>>) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut length = 0usize;
        let mut authorization = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("authorization") {
                    authorization = Some(value.to_owned());
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = if !request_line.starts_with("POST /v1/chat/completions ") {
            Reply::Status(404, Vec::new(), "{\"error\": \"no such route\"}".to_owned())
        } else {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let prompt = body["messages"][0]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let request = {
                let mut log = log.lock().expect("request log");
                let request = Request {
                    n: log.len(),
                    prompt,
                    body,
                    authorization,
                };
                log.push(request.clone());
                request
            };
            handler(&request)
        };
        if !answer(&mut stream, reply) {
            return;
        }
    }
}

/// Writes the reply; false when the connection is to end.
fn answer(stream: &mut TcpStream, reply: Reply) -> bool {
    let (status, headers, body) = match reply {
        Reply::Drop => return false,
        Reply::Delay(wait, reply) => {
            std::thread::sleep(wait);
            return answer(stream, *reply);
        }
        Reply::Content(content) => (
            200,
            Vec::new(),
            serde_json::json!({
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop"
                }]
            })
            .to_string(),
        ),
        Reply::Status(status, headers, body) => (status, headers, body),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .and_then(|()| stream.flush())
        .is_ok()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
