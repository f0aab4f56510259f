//! The tonic `IngestService`: each method authenticates, hands its
//! record(s) to [`Shared`]'s path and counts the call; `SubmitStream` keeps
//! up to the stream window of records in flight and answers in order.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::debug;

use super::error::IngestError;
use super::intake::Shared;
use super::metrics::Method;
use super::server::until_draining;
use crate::proto::v1::ingest_service_server::IngestService;
use crate::proto::v1::{
    CheckQuotaRequest, CheckQuotaResponse, FieldViolation, GetInstrumentRequest, Instrument,
    SubmitDispositionRequest, SubmitDispositionResponse, SubmitRequest, SubmitResponse, SubmitResult,
};
use crate::validate::Violation;

/// The `IngestService` implementation.
#[derive(Debug, Clone)]
pub struct Service {
    pub(super) shared: Arc<Shared>,
}

impl Shared {
    /// One record of a stream, as its result.
    async fn ingest_record(&self, frontend: &str, index: u64, request: SubmitRequest) -> SubmitResult {
        match self.ingest_request(frontend, request).await {
            Ok(response) => SubmitResult {
                index,
                accepted: true,
                violations: Vec::new(),
                code: 0,
                message: String::new(),
                read_token: response.read_token,
            },
            Err(e) => {
                let status = e.to_status_with(&self.details);
                SubmitResult {
                    index,
                    accepted: false,
                    violations: e.violations().into_iter().map(field_violation).collect(),
                    code: status.code() as i32,
                    message: status.message().to_string(),
                    read_token: String::new(),
                }
            }
        }
    }
}

fn field_violation(v: Violation) -> FieldViolation {
    FieldViolation { field: v.field, rule: v.rule.as_str().to_string(), message: v.message }
}

#[tonic::async_trait]
impl IngestService for Service {
    async fn submit(&self, request: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let start = Instant::now();
        let result = match self.shared.frontend(&request) {
            Ok(frontend) => self.shared.ingest_request(&frontend, request.into_inner()).await,
            Err(e) => Err(e),
        };
        let code = result.as_ref().map_or_else(IngestError::code, |_| Code::Ok);
        self.shared.metrics.request(Method::Submit, code, start.elapsed().as_secs_f64());
        result.map(Response::new).map_err(|e| e.to_status_with(&self.shared.details))
    }

    async fn submit_disposition(
        &self,
        request: Request<SubmitDispositionRequest>,
    ) -> Result<Response<SubmitDispositionResponse>, Status> {
        let start = Instant::now();
        let result = match self.shared.frontend(&request) {
            Ok(frontend) => self
                .shared
                .ingest_disposition(&frontend, request.into_inner().disposition)
                .await
                .map(|(t, _)| t),
            Err(e) => Err(e),
        };
        let code = result.as_ref().map_or_else(IngestError::code, |_| Code::Ok);
        self.shared.metrics.request(Method::SubmitDisposition, code, start.elapsed().as_secs_f64());
        result
            .map(|t| Response::new(SubmitDispositionResponse { received_at: Some(t.into()) }))
            .map_err(|e| e.to_status_with(&self.shared.details))
    }

    type SubmitStreamStream = ReceiverStream<Result<SubmitResult, Status>>;

    async fn submit_stream(
        &self,
        request: Request<Streaming<SubmitRequest>>,
    ) -> Result<Response<Self::SubmitStreamStream>, Status> {
        let start = Instant::now();
        let frontend = match self.shared.frontend(&request) {
            Ok(f) => f,
            Err(e) => {
                self.shared.metrics.request(Method::SubmitStream, e.code(), start.elapsed().as_secs_f64());
                return Err(e.to_status_with(&self.shared.details));
            }
        };
        // Results on their way to the client. Bounded by the stream window:
        // when the client reads slowly, the task below stops reading
        // records. The receiver is the response body tonic sends; when the
        // client goes away sends fail and the task ends. The task drops the
        // sender when it is done, which ends the response.
        let (tx, rx) = mpsc::channel(self.shared.stream_window);
        tokio::spawn(run_stream(self.shared.clone(), frontend, request.into_inner(), tx, start));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_instrument(
        &self,
        request: Request<GetInstrumentRequest>,
    ) -> Result<Response<Instrument>, Status> {
        let start = Instant::now();
        let result = self.shared.frontend(&request).and_then(|_| {
            let study = &request.get_ref().study;
            self.shared
                .catalog
                .get(study)
                .map(|s| Instrument::from(s.as_ref()))
                .ok_or(IngestError::UnknownStudy)
        });
        let code = result.as_ref().map_or_else(IngestError::code, |_| Code::Ok);
        self.shared.metrics.request(Method::GetInstrument, code, start.elapsed().as_secs_f64());
        result.map(Response::new).map_err(|e| e.to_status_with(&self.shared.details))
    }

    async fn check_quota(
        &self,
        request: Request<CheckQuotaRequest>,
    ) -> Result<Response<CheckQuotaResponse>, Status> {
        let start = Instant::now();
        let result = self.shared.auth.identify(request.metadata()).and_then(|_| {
            super::quota::check(&self.shared.catalog, self.shared.quotas.get(), request.get_ref())
        });
        let code = result.as_ref().map_or_else(IngestError::code, |_| Code::Ok);
        self.shared.metrics.request(Method::CheckQuota, code, start.elapsed().as_secs_f64());
        result.map(Response::new).map_err(|e| e.to_status_with(&self.shared.details))
    }
}

/// Reads a stream's records, ingests up to `stream_window` of them at once
/// and sends their results in request order.
async fn run_stream(
    shared: Arc<Shared>,
    frontend: String,
    mut inbound: Streaming<SubmitRequest>,
    tx: mpsc::Sender<Result<SubmitResult, Status>>,
    start: Instant,
) {
    let mut draining = shared.draining.clone();
    // Records being ingested, oldest first; results leave in this order.
    let mut pending = FuturesOrdered::new();
    let mut next_index: u64 = 0;
    let mut reading = true;
    // How the stream ends when not with OK.
    let mut end: Option<Status> = None;
    let mut client_gone = false;
    loop {
        tokio::select! {
            biased;
            Some(result) = pending.next(), if !pending.is_empty() => {
                if tx.send(Ok(result)).await.is_err() {
                    client_gone = true;
                    break;
                }
            }
            // Shutdown: read no more, finish what is pending, then end with
            // UNAVAILABLE so the client resends records without a result.
            () = until_draining(&mut draining), if reading => {
                reading = false;
                end = Some(IngestError::ShuttingDown.to_status());
            }
            message = inbound.message(), if reading && pending.len() < shared.stream_window => {
                match message {
                    Ok(Some(request)) => {
                        let index = next_index;
                        next_index += 1;
                        let shared = shared.clone();
                        let frontend = frontend.clone();
                        pending.push_back(async move { shared.ingest_record(&frontend, index, request).await });
                    }
                    Ok(None) => reading = false,
                    Err(status) => {
                        reading = false;
                        end = Some(status);
                    }
                }
            }
            else => break,
        }
    }
    let code = match (&end, client_gone) {
        (_, true) => Code::Cancelled,
        (Some(status), false) => status.code(),
        (None, false) => Code::Ok,
    };
    if let Some(status) = end
        && !client_gone
    {
        let _ = tx.send(Err(status)).await;
    }
    debug!(records = next_index, code = ?code, "stream finished");
    shared.metrics.request(Method::SubmitStream, code, start.elapsed().as_secs_f64());
}
