-- The demo processes started in the monitor_service container
-- (docker/entrypoint.sh). Raise an alarm with
--   docker compose exec monitor test_alarm.sh --alarm 1
USE v_process_monitor;
INSERT IGNORE INTO PROCESE (process_id, process_name) VALUES
  (1, 'demo_worker1'),
  (2, 'demo_worker2'),
  (3, 'demo_worker3');
INSERT IGNORE INTO STATUS_PROCESS (process_id, alarma) VALUES
  (1, 0),
  (2, 0),
  (3, 0);
