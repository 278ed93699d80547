//! The server side of `thanos.Store/Series` as encoded frames: requests are
//! decoded as usual, responses are written as the `SeriesResponse` bytes the
//! [`SeriesSink`](crate::SeriesSink) already encoded.

use bytes::Bytes;
use prost::Message;
use sluice_proto::thanos::SeriesRequest;

/// Codec for a Series call whose responses are pre-encoded frames.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerFrameCodec;

#[derive(Debug, Clone, Copy, Default)]
pub struct FrameEncoder;

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestDecoder;

impl tonic::codec::Codec for ServerFrameCodec {
    type Encode = Bytes;
    type Decode = SeriesRequest;
    type Encoder = FrameEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> FrameEncoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

impl tonic::codec::Encoder for FrameEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RequestDecoder {
    type Item = SeriesRequest;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, tonic::Status> {
        SeriesRequest::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::invalid_argument(format!("decoding SeriesRequest: {e}")))
    }
}
