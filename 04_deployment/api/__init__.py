"""The prediction API: a Flask app served by gunicorn (04_deployment/serve.py starts it).

    gunicorn --pythonpath 04_deployment,. 'api.app:create_app()'

Modules: settings (the `api:` config section), app (factory, hooks, JSON errors), routes and
admin (the endpoints), model_service (load + hot reload of models/production), validation
(request bodies -> checked inputs), metrics (Prometheus), auth (API key), jobs and jobrunner
(background retrain), dashboard (the HTML page), gunicorn_conf (logging, worker hooks).
"""
