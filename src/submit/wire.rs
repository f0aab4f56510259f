//! One `SubmitStream` call whose requests are already encoded: `submit`
//! keeps each record as its protobuf bytes and sends the same bytes on
//! every attempt, so a resend neither re-encodes nor clones a message.

use bytes::{BufMut, Bytes};
use futures::Stream;
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder, Streaming};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;
use tonic::{GrpcMethod, Status};
use tonic_prost::ProstDecoder;

use crate::proto::v1::SubmitResult;

/// The service and method, as the generated client names them.
const SERVICE: &str = "fieldwatch.v1.IngestService";
const METHOD: &str = "SubmitStream";
const PATH: &str = "/fieldwatch.v1.IngestService/SubmitStream";

/// Largest result message accepted (a result lists one violation per
/// problem of its record, each a short sentence).
const MAX_RESULT_BYTES: usize = 16 << 20;

/// Sends encoded `SubmitRequest`s as they are; decodes `SubmitResult`s.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = SubmitResult;
    type Encoder = EncodedEncoder;
    type Decoder = ProstDecoder<SubmitResult>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

/// Copies a message's encoding into the frame.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedEncoder;

impl Encoder for EncodedEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

/// Connects and opens a `SubmitStream` whose requests are `requests`;
/// returns the results as they come. A connection failure is UNAVAILABLE
/// (worth retrying); a refusal (bad token) is the server's status.
pub(super) async fn open(
    endpoint: &Endpoint,
    auth: Option<&MetadataValue<Ascii>>,
    requests: impl Stream<Item = Bytes> + Send + 'static,
) -> Result<Streaming<SubmitResult>, Status> {
    let channel = endpoint.connect().await.map_err(|e| Status::unavailable(format!("connect: {e}")))?;
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_RESULT_BYTES);
    grpc.ready().await.map_err(|e| Status::unavailable(format!("connect: {e}")))?;
    let mut request = tonic::Request::new(requests);
    if let Some(a) = auth {
        request.metadata_mut().insert("authorization", a.clone());
    }
    request.extensions_mut().insert(GrpcMethod::new(SERVICE, METHOD));
    let path = PathAndQuery::from_static(PATH);
    Ok(grpc.streaming(request, path, EncodedCodec).await?.into_inner())
}
