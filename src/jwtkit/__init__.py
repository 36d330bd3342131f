"""jwtkit: JSON Web Tokens for Python apps."""
