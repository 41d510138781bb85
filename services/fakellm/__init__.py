"""fakellm: an OpenAI- and Anthropic-shaped fake LLM provider over real HTTP.

Front doors: :func:`services.fakellm.app.create_app`,
:func:`services.fakellm.server.serve_in_thread` (tests, benches, demo) and
``python -m services.fakellm`` (:func:`services.fakellm.main.run`).

Force a fault per request with the header ``x-fakellm-fault: <name>`` or the
marker ``[[fault:<name>]]`` in the last user message; names: hang, http_500,
http_502, http_503, http_529, error_body, invalid_json, rate_limit,
bad_request, outage; ``[[fault:<name>:<n>]]`` forces it on the first ``n``
requests with that message text only. Switch latency, limits and the random fault mix at run
time with ``PUT /_control/config``; open an outage with
``POST /_control/outage {"seconds": N}``; read ``GET /_control/stats``.
"""
