"""Who is calling: principals and the authenticator (principals.py), user and API key records
(records.py), signed tokens, password hashing, and user administration on a data plane."""
