"""The init container's restore: decide, choose, stage, journal, quarantine, report.

`action.prepare_volume` is the whole run; `plan.plan` its dry run. Everything else here serves
them: the decision and the choice of snapshots (`decision`), the staging area and its journal
(`staging`), the outcome and where it is written (`outcome`), the user's health check, the
progress lines, retries against a deadline, and signal handling.
"""
