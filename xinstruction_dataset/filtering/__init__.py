"""Sources and filter blocks: raw documents in, kept / rejected / quarantined documents out."""
