"""The cron tick's own machinery: lock, state, light config, drift check, notifications, crontab."""
