"""Fine-tuning over the API: OpenAI-shaped files and jobs that end as an adapter version.

``files`` keeps each tenant's uploads, ``jobs`` the job records (SQLite, so the queue
survives a restart), ``requests`` turns a job request into a training run's options,
``runner`` trains one job at a time in a ``worker`` process at low CPU priority and
registers what it publishes, and ``service`` is what the HTTP routes call.
"""
