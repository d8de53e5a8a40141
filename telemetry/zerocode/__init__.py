"""Zero code: ``opentelemetry-instrument celery -A app worker`` gets what ``telemetry.install(app)`` gives.

    pip install jobpilot-telemetry opentelemetry-distro
    OTEL_PYTHON_CONFIGURATOR=jobpilot_telemetry opentelemetry-instrument celery -A app worker
    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=jobpilot_telemetry    # leaves all of it out

Three entry points of the ``jobpilot-telemetry`` distribution, which
``opentelemetry-instrument`` loads in every process it starts:

* ``opentelemetry_instrumentor`` ``jobpilot_telemetry``
  (:class:`~telemetry.zerocode.instrumentor.TelemetryInstrumentor`): installs
  the telemetry on the app a process turns out to run (a worker or beat when
  Celery imports the app's modules, a producer at its first publish), and
  registers the telemetry's Redis transport, whose broker commands make no spans;
* ``opentelemetry_post_instrument`` ``jobpilot_telemetry``
  (:func:`~telemetry.zerocode.upstream.after_instrumentors`): once every
  instrumentor has loaded, takes upstream's Celery instrumentor out, so each
  task has one consumer span and each publish one producer span, ours;
* ``opentelemetry_configurator`` ``jobpilot_telemetry``
  (:class:`~telemetry.zerocode.configurator.TelemetryConfigurator`): when
  selected, sets up no SDK provider before the pool forks; each process of the
  worker sets up its own (``telemetry.tracing``). See ``docs/zero-code.md``.
"""
