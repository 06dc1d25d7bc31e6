"""RFC 9420 Messaging Layer Security core (sans-IO)."""
