//! monitor_service: restarts the processes whose alarm is raised in STATUS_PROCESS.
