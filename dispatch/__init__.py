"""Call-taking, incidents, units, response plans, recommendation, AVL, exchange formats."""
