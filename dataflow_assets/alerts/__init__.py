"""Alerts: who is told when a generation or a check fails, and when it recovers.

``config`` (alerts.yaml / environment), ``channels`` (webhook, e-mail), ``streaks`` (one alert
per failure streak, the sensor cursor), ``sensors`` (the two Dagster sensors).
"""
