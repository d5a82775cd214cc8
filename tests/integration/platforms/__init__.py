"""
Test doubles of the five runbook platforms (../shared/seeds), one module each, each speaking its
platform's dialect as conf/examples/<platform>.yaml expects it. base.py holds what they share: the
exchange's own record, the trading loop that writes into PostgreSQL, the HTTP server with its
request log and fault switches, and the fake command-line tools (kubectl, systemctl,
docker-compose) written into a test's temporary directory.
"""
