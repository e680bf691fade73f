//! The AWS Lambda function (the `bootstrap` binary, `lambda` feature): the
//! worker's parts, wired as `run` wires them (the same settings, from the
//! same KEYWATCH_* variables), with an SQS event source mapping's batches
//! in place of the receive loop ([`crate::source::lambda`]). The parts are
//! built once, at the function's cold start, and serve every invocation of
//! that execution environment; the metrics of each invocation are written
//! as CloudWatch EMF lines when it ends.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, LambdaEvent};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::parts::Parts;
use super::{checked_queue, wire, Wired};
use crate::config::RunArgs;
use crate::exceptions::Exceptions;
use crate::exceptions_source;
use crate::source;
use crate::telemetry;

/// Time kept back from an invocation's deadline to answer in: what is not
/// done by then is reported as failed, rather than the whole batch failing
/// with the invocation's timeout.
const ANSWER_MARGIN: Duration = Duration::from_secs(3);

/// Builds the parts and serves invocations until the runtime stops (it
/// does not: Lambda freezes and ends the process). An error at start-up is
/// the function's init error.
pub async fn lambda(args: &RunArgs, sdk: &SdkConfig) -> Result<(), lambda_runtime::Error> {
    let shutdown = CancellationToken::new();
    let (queue, parts) = Parts::build(&args.common, false, sdk, args.wait(), &shutdown, |clients| checked_queue(clients, args)).await?;
    let Wired { processor, ledger: _, watch } = wire(args, parts, &queue)?;
    if let Some(watch) = watch {
        // Polled while the function runs (Lambda freezes it in between).
        let p = processor.clone();
        let apply = move |e: Exceptions| p.set_exceptions(e);
        tokio::spawn(exceptions_source::keep_current(watch, args.common.exceptions_poll(), true, apply, shutdown.clone()));
    }
    info!(queue_url = %args.queue_url, version = env!("CARGO_PKG_VERSION"), "keywatch function started");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let processor = processor.clone();
        async move {
            let left = event.context.deadline().duration_since(SystemTime::now()).unwrap_or_default();
            let records = event.payload.records.len();
            let response: SqsBatchResponse = source::lambda::handle(processor, event.payload, left.saturating_sub(ANSWER_MARGIN)).await;
            let failed = response.batch_item_failures.len();
            info!(request_id = %event.context.request_id, records, failed, "batch handled");
            let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            if let Err(e) = telemetry::flush_emf(&mut std::io::stdout().lock(), now_ms) {
                warn!(error = %e, "could not write this invocation's metrics (EMF) to standard output");
            }
            Ok::<_, lambda_runtime::Error>(response)
        }
    }))
    .await
}
