"""h323 package."""
