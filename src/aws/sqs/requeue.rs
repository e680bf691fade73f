//! The input queue as the requeue port: scan requests fanned out one per
//! account, and delayed re-checks, sent back to the queue in batches of ten.

use super::*;

impl Requeue for SqsQueue {
    fn send<'a>(&'a self, bodies: &'a [String]) -> BoxFuture<'a, Result<(), AwsError>> {
        self.send_batches(bodies, None)
    }

    fn send_delayed<'a>(&'a self, bodies: &'a [String], delay: Duration) -> BoxFuture<'a, Result<(), AwsError>> {
        self.send_batches(bodies, Some(delay))
    }
}

impl SqsQueue {
    /// `SendMessageBatch`, 10 at a time, each entry delayed by `delay`
    /// (`DelaySeconds`, whole seconds, at most 900); every entry must be
    /// accepted.
    fn send_batches<'a>(&'a self, bodies: &'a [String], delay: Option<Duration>) -> BoxFuture<'a, Result<(), AwsError>> {
        let delay_seconds = delay.map(|d| d.as_secs().min(900) as i32);
        async move {
            for chunk in bodies.chunks(MAX_BATCH) {
                let entries: Vec<SendMessageBatchRequestEntry> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(body)
                            .set_delay_seconds(delay_seconds)
                            .build()
                    })
                    .collect::<Result<_, _>>()
                    .expect("id and body are always set");
                let request = self.client.send_message_batch().queue_url(&self.url).set_entries(Some(entries));
                let out = call(Service::Sqs, "SendMessageBatch", request.customize().config_override(self.call_timeouts()).send()).await?;
                let results = entry_results("SendMessageBatch", chunk.len(), out.failed(), out.successful().iter().map(|s| s.id()));
                if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                    return Err(e);
                }
            }
            Ok(())
        }
        .boxed()
    }
}
