//! The log-read side of an agent on another host: [`RemoteLogReader`]
//! queues GetTaskLogs' reads for the agent, which long-polls for them
//! (`/agent/v1/log-requests`) and posts the answers; the read waits for
//! its answer with a timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_protocol::{LogReadError, PendingLogRequest, TaskLogReader, TaskLogs, TaskLogsRequest};
use tokio::sync::{Notify, oneshot};

/// How long a read waits for the agent's answer.
pub const LOG_ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// An agent counts as reachable for log reads while it polls, or polled
/// this recently (between one answer and its next poll).
const POLLED_RECENTLY: Duration = Duration::from_secs(5);

/// The reads waiting for one remote agent. See the module docs.
#[derive(Debug)]
pub struct RemoteLogReader {
    instance_arn: String,
    state: Mutex<Queue>,
    /// Wakes the agent's poll when a read is queued.
    queued: Notify,
    answer_timeout: Duration,
}

#[derive(Debug, Default)]
struct Queue {
    next_id: u64,
    waiting: VecDeque<PendingLogRequest>,
    /// Reads sent (or queued) and not yet answered, by id.
    answers: HashMap<u64, oneshot::Sender<Result<TaskLogs, LogReadError>>>,
    /// Polls in progress.
    polling: usize,
    last_poll: Option<Instant>,
}

/// Counts a poll in progress for as long as it lives (also when the
/// request is dropped mid-poll: the agent went away).
struct Polling<'a>(&'a RemoteLogReader);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        let mut q = self.0.queue();
        q.polling = q.polling.saturating_sub(1);
        q.last_poll = Some(Instant::now());
    }
}

impl RemoteLogReader {
    /// The reads of the agent of `instance_arn`.
    pub fn new(instance_arn: &str) -> Self {
        RemoteLogReader {
            instance_arn: instance_arn.to_owned(),
            state: Mutex::new(Queue::default()),
            queued: Notify::new(),
            answer_timeout: LOG_ANSWER_TIMEOUT,
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The agent's poll: the reads queued, waiting up to `wait` for one.
    pub async fn take(&self, wait: Duration) -> Vec<PendingLogRequest> {
        let _polling = {
            let mut q = self.queue();
            q.polling += 1;
            q.last_poll = Some(Instant::now());
            Polling(self)
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so a read queued in between wakes it.
            let queued = self.queued.notified();
            {
                let mut q = self.queue();
                if !q.waiting.is_empty() {
                    return q.waiting.drain(..).collect();
                }
            }
            if tokio::time::timeout_at(deadline, queued).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// The agent's answer to read `id`; false when nobody waits for it
    /// (timed out, or an unknown id).
    pub fn answer(&self, id: u64, result: Result<TaskLogs, LogReadError>) -> bool {
        let Some(tx) = self.queue().answers.remove(&id) else {
            return false;
        };
        tx.send(result).is_ok()
    }

    fn reachable(q: &Queue) -> bool {
        q.polling > 0 || q.last_poll.is_some_and(|t| t.elapsed() < POLLED_RECENTLY)
    }
}

#[async_trait]
impl TaskLogReader for RemoteLogReader {
    async fn read_task_logs(&self, req: TaskLogsRequest) -> Result<TaskLogs, LogReadError> {
        let (id, rx) = {
            let mut q = self.queue();
            if !Self::reachable(&q) {
                return Err(LogReadError::Failed {
                    message: format!(
                        "the agent of container instance {} is not connected to this server; its tasks' logs cannot be read now",
                        self.instance_arn
                    ),
                });
            }
            let id = q.next_id;
            q.next_id += 1;
            let (tx, rx) = oneshot::channel();
            q.answers.insert(id, tx);
            q.waiting.push_back(PendingLogRequest { id, request: req });
            (id, rx)
        };
        self.queued.notify_waiters();
        let answered = tokio::time::timeout(self.answer_timeout, rx).await;
        // Whatever happened, the read is no longer waited for.
        {
            let mut q = self.queue();
            q.answers.remove(&id);
            q.waiting.retain(|r| r.id != id);
        }
        match answered {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(LogReadError::Failed {
                message: format!(
                    "the agent of container instance {} did not answer the log read within {}s",
                    self.instance_arn,
                    self.answer_timeout.as_secs()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn request(task: &str) -> TaskLogsRequest {
        TaskLogsRequest {
            task_arn: task.into(),
            container: None,
            start_micros: None,
            limit: 10,
        }
    }

    #[tokio::test]
    async fn a_read_without_a_polling_agent_says_it_is_not_connected() {
        let r = RemoteLogReader::new("ci-1");
        let e = r.read_task_logs(request("t")).await.unwrap_err();
        assert!(e.to_string().contains("ci-1 is not connected"), "{e}");
    }

    #[tokio::test]
    async fn a_read_goes_to_the_polling_agent_and_its_answer_comes_back() {
        let r = Arc::new(RemoteLogReader::new("ci-1"));
        let poll = {
            let r = Arc::clone(&r);
            tokio::spawn(async move { r.take(Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let read = {
            let r = Arc::clone(&r);
            tokio::spawn(async move { r.read_task_logs(request("t1")).await })
        };
        let asked = poll.await.unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].request.task_arn, "t1");
        let logs = TaskLogs {
            containers: vec![berth_protocol::ContainerLogs {
                name: "app".into(),
                entries: Vec::new(),
            }],
        };
        assert!(r.answer(asked[0].id, Ok(logs.clone())));
        assert_eq!(read.await.unwrap(), Ok(logs));
        // Answered once: a second answer finds nobody waiting.
        assert!(!r.answer(asked[0].id, Ok(TaskLogs::default())));
    }

    #[tokio::test]
    async fn an_unanswered_read_times_out_and_leaves_nothing_queued() {
        let mut r = RemoteLogReader::new("ci-1");
        r.answer_timeout = Duration::from_millis(100);
        let r = Arc::new(r);
        let _ = r.take(Duration::from_millis(1)).await;
        let e = r.read_task_logs(request("t")).await.unwrap_err();
        assert!(e.to_string().contains("did not answer"), "{e}");
        assert!(r.take(Duration::from_millis(1)).await.is_empty());
    }
}
