"""Emergency call-taking (issue 8): caller location (PIDF-LO, AML), the queue/ACD, desk statistics.

Everything here is sans-I/O except ``service.py`` (database + SIP glue) and the web console module.
"""
