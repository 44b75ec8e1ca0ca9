//! batch/v1: Jobs and CronJobs.

mod cronjob;
mod job;

use super::Strategy;
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(job::JobStrategy));
    all.push(Arc::new(cronjob::CronJobStrategy));
}
