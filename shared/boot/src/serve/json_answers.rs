//! hyper answers some requests by itself, before the service sees them: a head it
//! cannot parse (400), a head over [`super::MAX_HEAD_BYTES`] (431), a URI too long
//! (414). It writes those with an empty body and offers no hook for one. Here they get
//! the JSON body every other error has, rewritten on their way to the socket.
//!
//! Why the write side, and not a second parser (httparse) in front of hyper's: hyper is
//! the parser of record. A gate on the read side would have to reject exactly what
//! hyper rejects, and follow every request body, chunk by chunk, to find the next head
//! on a keep-alive connection; wherever it differed, hyper's empty answer would leak
//! again. The write side only has to follow answers hyper framed itself: a head, then
//! `content-length` bytes or chunks, no body for HEAD, 1xx, 204 and 304. And it can
//! tell hyper's own answers from the service's without guessing from status codes: an
//! answer is hyper's own exactly when no request handed to the service is waiting for
//! one, because hyper answers by itself only when it could not make a request of the
//! bytes, and HTTP/1.1 answers in order. hyper closes the connection after such an
//! answer, so the rewritten one says `connection: close`.
//!
//! When the header-read timeout fires, hyper writes nothing and closes (its
//! `on_error` has no answer for a timeout), partial head or idle alike: no answer, so
//! nothing to rewrite. An idle keep-alive connection must not be sent an unasked 408
//! either: a client that has just sent a request on it would read the 408 as the
//! answer.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use axum::http::Method;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The methods of the requests handed to the service whose answers have not been
/// written yet, oldest first (HEAD answers have no body whatever their length says).
#[derive(Clone, Default)]
pub(super) struct Asked(Arc<Mutex<VecDeque<Method>>>);

impl Asked {
    pub(super) fn push(&self, method: &Method) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(method.clone());
    }

    fn pop(&self) -> Option<Method> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

/// A connection's stream, with hyper's own bodiless answers given a JSON body.
pub(super) struct JsonAnswers<S> {
    inner: S,
    framer: Framer,
    /// Bytes accepted from hyper and not yet on the socket.
    out: Vec<u8>,
    sent: usize,
}

impl<S> JsonAnswers<S> {
    pub(super) fn new(inner: S, asked: Asked) -> Self {
        Self {
            inner,
            framer: Framer::new(asked),
            out: Vec::new(),
            sent: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> JsonAnswers<S> {
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonAnswers<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonAnswers<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Hyper's bytes wait here only as long as the socket is full: no more is taken
        // until they are sent.
        ready!(this.poll_send(cx))?;
        this.framer.feed(buf, &mut this.out);
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.framer.finish(&mut this.out);
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Follows the answers in the bytes hyper writes, and rewrites its own.
struct Framer {
    asked: Asked,
    state: State,
    /// An answer's head, held until it is whole.
    head: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Head,
    Body(u64),
    Chunked(Chunk),
    /// Everything passes as it is: after an upgrade, a body that lasts until the
    /// connection closes, hyper's own answer, or anything this framer does not follow.
    Raw,
}

/// Where a chunked body is (RFC 9112 section 7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Size(u64),
    Extension(u64),
    SizeEnd(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section; `blank`: at the start of a line.
    Trailer {
        blank: bool,
    },
}

/// No head hyper writes comes near this; past it the framer stops following.
const MAX_ANSWER_HEAD: usize = 64 * 1024;

impl Framer {
    fn new(asked: Asked) -> Self {
        Self {
            asked,
            state: State::Head,
            head: Vec::new(),
        }
    }

    /// Moves `bytes` to `out`, rewriting hyper's own answers on the way.
    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        while !bytes.is_empty() {
            match self.state {
                State::Raw => {
                    out.extend_from_slice(bytes);
                    return;
                }
                State::Body(left) => {
                    let n = bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    self.state = match left - n as u64 {
                        0 => State::Head,
                        left => State::Body(left),
                    };
                }
                State::Chunked(chunk) => {
                    let (n, next) = chunk.scan(bytes);
                    out.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    self.state = next;
                }
                State::Head => {
                    let searched = self.head.len().saturating_sub(3);
                    self.head.extend_from_slice(bytes);
                    match find(&self.head[searched..], b"\r\n\r\n") {
                        Some(at) => {
                            let end = searched + at + 4;
                            let rest = self.head.len() - end;
                            self.head.truncate(end);
                            bytes = &bytes[bytes.len() - rest..];
                            self.answer_head(out);
                        }
                        None if self.head.len() > MAX_ANSWER_HEAD => {
                            out.append(&mut self.head);
                            self.state = State::Raw;
                        }
                        None => return,
                    }
                }
            }
        }
    }

    /// Hyper is closing the connection: nothing may stay behind.
    fn finish(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.head);
    }

    fn answer_head(&mut self, out: &mut Vec<u8>) {
        let head = std::mem::take(&mut self.head);
        let Some(answer) = AnswerHead::parse(&head) else {
            out.extend_from_slice(&head);
            self.state = State::Raw;
            return;
        };
        if (100..200).contains(&answer.status) {
            // 100 Continue is hyper's and answers nothing yet; 101 answers the request
            // that asked for the upgrade, and what follows is not HTTP.
            if answer.status == 101 {
                self.asked.pop();
                self.state = State::Raw;
            }
            out.extend_from_slice(&head);
            return;
        }
        match self.asked.pop() {
            Some(method) => {
                out.extend_from_slice(&head);
                self.state = answer.framing(&method);
            }
            None if answer.content_length == Some(0) && !answer.chunked => {
                out.extend_from_slice(&answer.with_json_body());
                self.state = State::Raw;
            }
            None => {
                out.extend_from_slice(&head);
                self.state = State::Raw;
            }
        }
    }
}

impl Chunk {
    /// How many of `bytes` belong to the body, and the state after them.
    fn scan(mut self, bytes: &[u8]) -> (usize, State) {
        let mut i = 0;
        while i < bytes.len() {
            let byte = bytes[i];
            self = match self {
                Chunk::Data(left) => {
                    let n = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    i += n;
                    match left - n as u64 {
                        0 => Chunk::DataCr,
                        left => Chunk::Data(left),
                    }
                }
                Chunk::Size(size) => {
                    i += 1;
                    match (byte as char).to_digit(16) {
                        Some(digit) => match size.checked_mul(16) {
                            Some(size) => Chunk::Size(size + u64::from(digit)),
                            None => return (i, State::Raw),
                        },
                        None if byte == b';' || byte == b' ' || byte == b'\t' => {
                            Chunk::Extension(size)
                        }
                        None if byte == b'\r' => Chunk::SizeEnd(size),
                        None => return (i, State::Raw),
                    }
                }
                Chunk::Extension(size) => {
                    i += 1;
                    if byte == b'\r' {
                        Chunk::SizeEnd(size)
                    } else {
                        Chunk::Extension(size)
                    }
                }
                Chunk::SizeEnd(size) => {
                    i += 1;
                    match (byte, size) {
                        (b'\n', 0) => Chunk::Trailer { blank: true },
                        (b'\n', size) => Chunk::Data(size),
                        _ => return (i, State::Raw),
                    }
                }
                Chunk::DataCr | Chunk::DataLf => {
                    i += 1;
                    match (self, byte) {
                        (Chunk::DataCr, b'\r') => Chunk::DataLf,
                        (Chunk::DataLf, b'\n') => Chunk::Size(0),
                        _ => return (i, State::Raw),
                    }
                }
                Chunk::Trailer { blank } => {
                    i += 1;
                    match byte {
                        b'\n' if blank => return (i, State::Head),
                        b'\n' => Chunk::Trailer { blank: true },
                        b'\r' => Chunk::Trailer { blank },
                        _ => Chunk::Trailer { blank: false },
                    }
                }
            };
        }
        (i, State::Chunked(self))
    }
}

/// The parts of an answer's head that decide its framing.
struct AnswerHead<'a> {
    status_line: &'a [u8],
    status: u16,
    content_length: Option<u64>,
    chunked: bool,
    date: Option<&'a [u8]>,
}

impl<'a> AnswerHead<'a> {
    fn parse(head: &'a [u8]) -> Option<Self> {
        let mut lines = head.split(|&b| b == b'\n').map(|line| line.trim_ascii());
        let status_line = lines.next()?;
        let status = status_line
            .strip_prefix(b"HTTP/1.")?
            .get(2..5)
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse().ok())?;
        let mut answer = AnswerHead {
            status_line,
            status,
            content_length: None,
            chunked: false,
            date: None,
        };
        for line in lines.filter(|line| !line.is_empty()) {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                answer.content_length = std::str::from_utf8(value).ok()?.parse().ok();
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                answer.chunked = value.to_ascii_lowercase().ends_with(b"chunked");
            } else if name.eq_ignore_ascii_case(b"date") {
                answer.date = Some(value);
            }
        }
        Some(answer)
    }

    /// What follows this head, for an answer to a `method` request (RFC 9112 6.3).
    fn framing(&self, method: &Method) -> State {
        if *method == Method::CONNECT && (200..300).contains(&self.status) {
            return State::Raw;
        }
        if *method == Method::HEAD || self.status == 204 || self.status == 304 {
            return State::Head;
        }
        match (self.chunked, self.content_length) {
            (true, _) => State::Chunked(Chunk::Size(0)),
            (false, Some(0)) => State::Head,
            (false, Some(n)) => State::Body(n),
            (false, None) => State::Raw,
        }
    }

    /// The same status line, with a JSON `detail` as its body.
    fn with_json_body(&self) -> Vec<u8> {
        let detail = match self.status {
            400 => "malformed HTTP request",
            414 => "request URI too long",
            431 => "request headers too large",
            _ => "the request could not be served",
        };
        let body = super::json_detail(detail);
        let mut answer = Vec::with_capacity(160 + body.len());
        answer.extend_from_slice(self.status_line);
        answer.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        answer.extend_from_slice(body.len().to_string().as_bytes());
        answer.extend_from_slice(b"\r\nconnection: close\r\n");
        if let Some(date) = self.date {
            answer.extend_from_slice(b"date: ");
            answer.extend_from_slice(date);
            answer.extend_from_slice(b"\r\n");
        }
        answer.extend_from_slice(b"\r\n");
        answer.extend_from_slice(body.as_bytes());
        answer
    }
}

/// Where `needle` (non-empty) first starts in `haystack`: a scan for its first byte,
/// then a comparison, since every answer's head passes through here.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(at) = haystack.get(from..)?.iter().position(|&b| b == first) {
        let start = from + at;
        if haystack.get(start + 1..start + needle.len()) == Some(rest) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
    const JSON_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
        content-length: 35\r\nconnection: close\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n\
        {\"detail\":\"malformed HTTP request\"}";

    /// The framer's output for `writes`, after `asked` requests were handed over.
    fn through(asked: &[Method], writes: &[&[u8]]) -> Vec<u8> {
        let queue = Asked::default();
        for method in asked {
            queue.push(method);
        }
        let mut framer = Framer::new(queue);
        let mut out = Vec::new();
        for write in writes {
            framer.feed(write, &mut out);
        }
        framer.finish(&mut out);
        out
    }

    /// The same bytes as one write, and one byte per write.
    fn both_ways(asked: &[Method], bytes: &[u8]) -> Vec<u8> {
        let whole = through(asked, &[bytes]);
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            String::from_utf8_lossy(&through(asked, &bytewise)),
            String::from_utf8_lossy(&whole),
            "split writes frame the same"
        );
        whole
    }

    fn lossy(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn hyper_own_bodiless_answer_gets_a_json_body_and_closes() {
        assert_eq!(lossy(&both_ways(&[], OWN_400)), lossy(JSON_400));
    }

    #[test]
    fn own_answer_after_a_sized_answer_on_a_keep_alive_connection_is_rewritten() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 28\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n";
        let bytes = [ok.as_slice(), OWN_400].concat();
        let expected = [ok.as_slice(), JSON_400].concat();
        assert_eq!(lossy(&both_ways(&[Method::GET], &bytes)), lossy(&expected));
    }

    #[test]
    fn own_answer_after_a_chunked_answer_with_trailers_is_rewritten() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
            5;x=y\r\nHTTP/\r\n1A\r\n1.1 400 Bad Request\r\n\r\n...\r\n0\r\nx-t: 1\r\n\r\n";
        let bytes = [chunked.as_slice(), OWN_400].concat();
        let expected = [chunked.as_slice(), JSON_400].concat();
        assert_eq!(lossy(&both_ways(&[Method::GET], &bytes)), lossy(&expected));
    }

    #[test]
    fn an_answer_to_head_has_no_body_whatever_its_length_says() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 64\r\n\r\n";
        let bytes = [head.as_slice(), OWN_400].concat();
        let expected = [head.as_slice(), JSON_400].concat();
        assert_eq!(lossy(&both_ways(&[Method::HEAD], &bytes)), lossy(&expected));
    }

    #[test]
    fn answers_the_service_wrote_pass_unchanged_even_when_bodiless() {
        let answers =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n\
            HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(
            lossy(&both_ways(
                &[Method::POST, Method::DELETE, Method::GET],
                answers
            )),
            lossy(answers)
        );
    }

    #[test]
    fn after_an_upgrade_or_an_unreadable_head_everything_passes() {
        let upgrade = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
        let bytes = [upgrade.as_slice(), OWN_400].concat();
        assert_eq!(lossy(&both_ways(&[Method::GET], &bytes)), lossy(&bytes));
        let garbage = [b"SSH-2.0\r\n\r\n".as_slice(), OWN_400].concat();
        assert_eq!(lossy(&both_ways(&[], &garbage)), lossy(&garbage));
    }

    #[test]
    fn a_close_delimited_body_passes_to_the_end() {
        let bytes = [b"HTTP/1.0 200 OK\r\n\r\n".as_slice(), OWN_400].concat();
        assert_eq!(lossy(&both_ways(&[Method::GET], &bytes)), lossy(&bytes));
    }
}
