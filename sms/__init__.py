"""SMS through Kannel: notification lists, situation bulletins, meeting notices and command messages
to phones (docs/sms.md). Pure cores: ``text`` (GSM-7/UCS-2, parts), ``flow`` (throughput, retries,
delivery status), ``dlr`` (delivery reports, numbers); I/O: ``kannel``, ``gateway``; ``service``."""
