//! batch/v1: Jobs and CronJobs (CronJobs also as batch/v1beta1, converted).

mod cron;
mod cronjob;
mod job;

use super::Strategy;
use std::sync::Arc;

pub fn register(all: &mut Vec<Arc<dyn Strategy>>) {
    all.push(Arc::new(job::JobStrategy));
    all.push(Arc::new(cronjob::CronJobStrategy));
    // After v1, so that v1 stays the preferred version.
    all.push(Arc::new(cronjob::CronJobV1beta1Strategy));
}
