//! Group commit: writers that arrive while a commit is being made wait,
//! and the next of them commits all that queued meanwhile in one write
//! transaction (one fsync). Each job keeps its own validation and its own
//! revision, so the outcome per job is what committing it alone right
//! after the jobs before it would have given.
//!
//! Every write holds redb's single writer for the length of a fsync; with
//! thousands of agents reporting, one fsync per report was the ceiling.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Jobs of type `J` answered with `R`, committed in groups.
#[derive(Debug)]
pub(crate) struct GroupCommit<J, R> {
    state: Mutex<State<J, R>>,
    done: Condvar,
}

#[derive(Debug)]
struct State<J, R> {
    next_id: u64,
    queue: Vec<(u64, J)>,
    answers: HashMap<u64, R>,
    /// A thread is committing a group.
    committing: bool,
}

impl<J, R> Default for GroupCommit<J, R> {
    fn default() -> Self {
        GroupCommit {
            state: Mutex::new(State {
                next_id: 0,
                queue: Vec::new(),
                answers: HashMap::new(),
                committing: false,
            }),
            done: Condvar::new(),
        }
    }
}

/// Puts the group's answers in place and hands the writer on, also when
/// committing panicked (its jobs are then answered by `lost`).
struct Handover<'a, J, R> {
    group: &'a GroupCommit<J, R>,
    ids: Vec<u64>,
    answers: Option<Vec<R>>,
    lost: &'a dyn Fn() -> R,
}

impl<J, R> Drop for Handover<'_, J, R> {
    fn drop(&mut self) {
        let mut st = self.group.lock();
        let answers = self.answers.take();
        match answers {
            Some(answers) => st.answers.extend(self.ids.iter().copied().zip(answers)),
            None => {
                for id in &self.ids {
                    st.answers.insert(*id, (self.lost)());
                }
            }
        }
        st.committing = false;
        self.group.done.notify_all();
    }
}

impl<J, R> GroupCommit<J, R> {
    fn lock(&self) -> MutexGuard<'_, State<J, R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits `job`, alone or with others: whichever caller finds no
    /// commit under way runs `commit` on every queued job (in arrival
    /// order; it returns one answer per job, in order). `lost` answers a
    /// job whose group's commit panicked.
    pub(crate) fn run(&self, job: J, commit: &dyn Fn(Vec<J>) -> Vec<R>, lost: &dyn Fn() -> R) -> R {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.queue.push((id, job));
        loop {
            if let Some(answer) = st.answers.remove(&id) {
                return answer;
            }
            if st.committing {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.committing = true;
            let (ids, jobs): (Vec<u64>, Vec<J>) = std::mem::take(&mut st.queue).into_iter().unzip();
            drop(st);
            let mut handover = Handover {
                group: self,
                ids,
                answers: None,
                lost,
            };
            let answers = commit(jobs);
            debug_assert_eq!(answers.len(), handover.ids.len());
            handover.answers = Some(answers);
            drop(handover);
            st = self.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_job_gets_its_own_answer_and_groups_form_under_contention() {
        let group: Arc<GroupCommit<u64, u64>> = Arc::default();
        let commits = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (group, commits) = (Arc::clone(&group), Arc::clone(&commits));
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let job = t * 1000 + i;
                        let answer = group.run(
                            job,
                            &|jobs: Vec<u64>| {
                                commits.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                jobs.iter().map(|j| j * 2).collect()
                            },
                            &|| u64::MAX,
                        );
                        assert_eq!(answer, job * 2);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = commits.load(Ordering::Relaxed);
        assert!(n < 1600, "{n} commits for 1600 jobs: none were grouped");
    }

    #[test]
    fn a_panicking_commit_answers_its_jobs_as_lost_and_frees_the_writer() {
        let group: GroupCommit<u32, Result<u32, &'static str>> = GroupCommit::default();
        let lost = || Err("lost");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            group.run(1, &|_| panic!("boom"), &lost)
        }));
        assert!(r.is_err());
        // The panicking caller's answer was left behind; the writer is free.
        assert_eq!(
            group.run(2, &|jobs| jobs.into_iter().map(Ok).collect(), &lost),
            Ok(2)
        );
    }
}
