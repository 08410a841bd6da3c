"""The prediction API: a Flask app served by gunicorn (see serve.py next to this package).

    gunicorn --pythonpath 04_deployment,. 'api.app:create_app()'

Modules: settings (the `api:` config section), model_service (load + hot reload of
models/production), validation (request bodies -> checked records/texts), metrics
(Prometheus), jobs (background retrain), dashboard (the HTML page), app (routes and wiring).
"""
