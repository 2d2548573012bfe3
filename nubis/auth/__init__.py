"""Who is calling (credentials, logins) and what they may do (authorization)."""
