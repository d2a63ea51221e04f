"""Exchange formats: NENA EIDO JSON (incidents) and OASIS CAP 1.2 XML (public warnings)."""
