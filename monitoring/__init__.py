"""Monitoring (监测): hydrological and weather gauges, their readings and the alarms they raise.

- `gauges`: the gauges of the site plan (position, unit, period, thresholds), validated;
- `window`: rain accumulation over a sliding window (pure);
- `alarms`: the pure alarm machine of one gauge (thresholds with hysteresis, stale and stuck faults);
- `payload`: the pure reading parser for MQTT and HTTP (every rejection has a reason);
- `store`: readings and alarms in PostgreSQL (COPY in batches, downsampled charts);
- `broker`, `mqtt`: the managed mosquitto and the MQTT ingest adapter;
- `response`: the `FloodResponse` Protocol an alarm acts through (filled by the composition root);
- `service`, `capability`: the running capability; `demo_publisher`: the synthetic flood scenario.
"""
