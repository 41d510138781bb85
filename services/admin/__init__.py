"""The admin service: providers, dead letters, lag and blocked keys over HTTP."""
