//! gRPC message compression with Thanos' `snappy` compressor
//! (`--grpc-compression=snappy`): each compressed message is one snappy
//! *framed* stream (the format of Go's `snappy.NewBufferedWriter`), sent
//! with the gRPC compressed flag set and `grpc-encoding: snappy`.
//!
//! tonic knows only its own compressors, so this works one level below it,
//! on the HTTP bodies: [`SnappyLayer`] lets every gRPC server accept
//! snappy-compressed requests and answer them compressed (as grpc-go does:
//! a server answers with the compressor the request came with, when the
//! client accepts it); [`SnappyChannel`] makes a client compress its
//! requests and decompress answers. Messages are re-framed one at a time;
//! a message's declared size is checked against the limit before it is
//! buffered, and decompression stops at the limit.

use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Response};
use http_body::Frame;
use tonic::Status;
use tonic::body::Body;

/// The compressor's name on the wire.
pub const NAME: &str = "snappy";

const ENCODING: &str = "grpc-encoding";
const ACCEPT_ENCODING: &str = "grpc-accept-encoding";

/// Compresses one message as a snappy framed stream.
pub fn compress(msg: &[u8]) -> Bytes {
    let mut enc = snap::write::FrameEncoder::new(Vec::with_capacity(msg.len() / 2 + 64));
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(msg);
    match enc.into_inner() {
        Ok(v) => Bytes::from(v),
        Err(_) => Bytes::new(),
    }
}

/// Decompresses one snappy framed message of at most `limit` bytes.
pub fn decompress(msg: &[u8], limit: usize) -> Result<Bytes, Status> {
    let mut out = Vec::new();
    snap::read::FrameDecoder::new(msg)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Status::internal(format!("snappy: corrupt compressed message: {e}")))?;
    if out.len() > limit {
        return Err(Status::resource_exhausted(format!(
            "snappy: decompressed message larger than {limit} bytes"
        )));
    }
    Ok(Bytes::from(out))
}

/// What a [`Recode`] body does to each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Uncompressed messages get compressed.
    Compress,
    /// Compressed messages get decompressed; others pass.
    Decompress,
}

/// A gRPC body whose messages are compressed or decompressed one by one;
/// trailers pass through.
struct Recode {
    inner: Body,
    buf: BytesMut,
    direction: Direction,
    /// Largest message accepted, compressed or not.
    limit: usize,
    ended: bool,
}

impl Recode {
    fn boxed(inner: Body, direction: Direction, limit: usize) -> Body {
        Body::new(Recode {
            inner,
            buf: BytesMut::new(),
            direction,
            limit,
            ended: false,
        })
    }

    /// The next whole message in the buffer, recoded.
    fn next_message(&mut self) -> Result<Option<Bytes>, Status> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let flag = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > self.limit {
            return Err(Status::resource_exhausted(format!(
                "gRPC message of {len} bytes is over the limit of {}",
                self.limit
            )));
        }
        // Not reserved ahead: the buffer grows with bytes that arrived, never
        // with a length a peer merely declared.
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        let payload = self.buf.split_to(len).freeze();
        let (flag, payload) = match (self.direction, flag) {
            (Direction::Compress, 0) => (1, compress(&payload)),
            (Direction::Decompress, 1) => (0, decompress(&payload, self.limit)?),
            (Direction::Decompress, 0) => (0, payload),
            (Direction::Compress, _) => {
                return Err(Status::internal("message already compressed"));
            }
            (Direction::Decompress, f) => {
                return Err(Status::internal(format!("bad gRPC message flag {f}")));
            }
        };
        let mut out = BytesMut::with_capacity(5 + payload.len());
        out.put_u8(flag);
        out.put_u32(
            u32::try_from(payload.len()).map_err(|_| Status::internal("message too large"))?,
        );
        out.put_slice(&payload);
        Ok(Some(out.freeze()))
    }
}

impl http_body::Body for Recode {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            match self.next_message() {
                Ok(Some(m)) => return Poll::Ready(Some(Ok(Frame::data(m)))),
                Ok(None) => {}
                Err(e) => {
                    self.ended = true;
                    self.buf.clear();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if self.ended {
                return Poll::Ready(if self.buf.is_empty() {
                    None
                } else {
                    self.buf.clear();
                    Some(Err(Status::internal("gRPC stream ended inside a message")))
                });
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.ended = true,
                Poll::Ready(Some(Err(e))) => {
                    self.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.buf.extend_from_slice(&data),
                    // Trailers end the stream.
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.buf.is_empty()
    }
}

fn is_snappy(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == NAME)
}

fn accepts_snappy(v: Option<&HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim() == NAME))
}

/// Server side: snappy requests decompressed before tonic sees them, and
/// their answers compressed when the client accepts snappy.
#[derive(Debug, Clone, Copy)]
pub struct SnappyLayer {
    /// Largest request message accepted (decompressed).
    pub max_request: usize,
    /// Largest response message.
    pub max_response: usize,
}

impl<S> tower::Layer<S> for SnappyLayer {
    type Service = SnappyServer<S>;

    fn layer(&self, inner: S) -> SnappyServer<S> {
        SnappyServer { inner, cfg: *self }
    }
}

/// The service [`SnappyLayer`] makes.
#[derive(Debug, Clone)]
pub struct SnappyServer<S> {
    inner: S,
    cfg: SnappyLayer,
}

impl<S> tower::Service<Request<Body>> for SnappyServer<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let compressed = is_snappy(req.headers().get(ENCODING));
        let answer_compressed = compressed && accepts_snappy(req.headers().get(ACCEPT_ENCODING));
        let req = if compressed {
            tracing::debug!(path = %req.uri().path(), answer_compressed, "snappy-compressed gRPC request");
            let (mut parts, body) = req.into_parts();
            parts.headers.remove(ENCODING);
            Request::from_parts(
                parts,
                Recode::boxed(body, Direction::Decompress, self.cfg.max_request),
            )
        } else {
            req
        };
        let fut = self.inner.call(req);
        let max = self.cfg.max_response;
        Box::pin(async move {
            let resp = fut.await?;
            if !answer_compressed {
                return Ok(resp);
            }
            let (mut parts, body) = resp.into_parts();
            parts
                .headers
                .insert(ENCODING, HeaderValue::from_static(NAME));
            parts
                .headers
                .insert(ACCEPT_ENCODING, HeaderValue::from_static(NAME));
            Ok(Response::from_parts(
                parts,
                Recode::boxed(body, Direction::Compress, max),
            ))
        })
    }
}

/// Client side: a channel whose requests go snappy-compressed (when
/// `snappy`), asking for snappy answers, and whose snappy answers are
/// decompressed before tonic sees them.
#[derive(Debug, Clone)]
pub struct SnappyChannel<S> {
    inner: S,
    snappy: bool,
    /// Largest response message accepted (decompressed).
    max_response: usize,
}

impl<S> SnappyChannel<S> {
    pub fn new(inner: S, snappy: bool, max_response: usize) -> Self {
        SnappyChannel {
            inner,
            snappy,
            max_response,
        }
    }

    /// Whether requests are compressed.
    pub fn compressed(&self) -> bool {
        self.snappy
    }
}

impl<S> tower::Service<Request<Body>> for SnappyChannel<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let req = if self.snappy {
            let (mut parts, body) = req.into_parts();
            parts
                .headers
                .insert(ENCODING, HeaderValue::from_static(NAME));
            parts
                .headers
                .insert(ACCEPT_ENCODING, HeaderValue::from_static(NAME));
            // Requests are ours: their size is bounded by what we encode.
            Request::from_parts(
                parts,
                Recode::boxed(body, Direction::Compress, usize::MAX >> 1),
            )
        } else {
            req
        };
        let fut = self.inner.call(req);
        let max = self.max_response;
        Box::pin(async move {
            let resp = fut.await?;
            if !is_snappy(resp.headers().get(ENCODING)) {
                return Ok(resp);
            }
            let (mut parts, body) = resp.into_parts();
            parts.headers.remove(ENCODING);
            Ok(Response::from_parts(
                parts,
                Recode::boxed(body, Direction::Decompress, max),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    async fn collect(body: Body) -> Result<Vec<u8>, Status> {
        use http_body_util::BodyExt;
        let b = body.collect().await?;
        Ok(b.to_bytes().to_vec())
    }

    /// A body delivering `bytes` in chunks of `n` bytes (messages cut anywhere).
    fn chunked(bytes: Vec<u8>, n: usize) -> Body {
        let chunks: Vec<Result<Frame<Bytes>, Status>> = bytes
            .chunks(n)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            chunks,
        )))
    }

    #[test]
    fn framed_format_round_trips_and_starts_with_the_stream_identifier() {
        let msg = b"hello hello hello hello".repeat(100);
        let c = compress(&msg);
        // The snappy framing format opens with its stream identifier chunk.
        assert_eq!(&c[..10], b"\xff\x06\x00\x00sNaPpY");
        assert!(c.len() < msg.len());
        assert_eq!(decompress(&c, msg.len()).unwrap(), Bytes::from(msg.clone()));
        assert!(decompress(&c, msg.len() - 1).is_err(), "limit enforced");
        assert!(decompress(b"\xff\x06\x00\x00sNaPpYgarbage", 100).is_err());
    }

    #[tokio::test]
    async fn bodies_are_recoded_message_by_message_across_chunk_boundaries() {
        let (a, b) = (b"first message".repeat(20), b"second".repeat(50));
        let mut plain = framed(0, &a);
        plain.extend(framed(0, &b));
        let compressed = collect(Recode::boxed(
            chunked(plain.clone(), 7),
            Direction::Compress,
            1 << 20,
        ))
        .await
        .unwrap();
        assert_eq!(compressed[0], 1, "compressed flag set");
        assert!(compressed.len() < plain.len());
        let back = collect(Recode::boxed(
            chunked(compressed, 3),
            Direction::Decompress,
            1 << 20,
        ))
        .await
        .unwrap();
        assert_eq!(back, plain);
    }

    #[tokio::test]
    async fn oversized_and_truncated_messages_are_errors() {
        let big = framed(0, &[7u8; 1000]);
        assert!(
            collect(Recode::boxed(
                chunked(big.clone(), 100),
                Direction::Decompress,
                999
            ))
            .await
            .is_err()
        );
        let cut = big[..500].to_vec();
        assert!(
            collect(Recode::boxed(
                chunked(cut, 100),
                Direction::Decompress,
                1 << 20
            ))
            .await
            .is_err()
        );
        // A header claiming 4 GiB is refused before anything is buffered.
        let lie = vec![1u8, 0xff, 0xff, 0xff, 0xff, 0];
        assert!(
            collect(Recode::boxed(
                chunked(lie, 6),
                Direction::Decompress,
                1 << 20
            ))
            .await
            .is_err()
        );
    }
}
