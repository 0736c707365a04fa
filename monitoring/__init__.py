"""Monitoring: pure checks over the lake, models, experiment and API; alert rules; the PagerDuty Events v2 sender."""
