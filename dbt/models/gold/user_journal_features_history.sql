{#-
  What the platform knew, and when: each build appends the as-of row of every user, stamped
  with the build's as-of time (what Redis serves after that build). Feast reads
  this table, so training data for (user, T) is the newest version stamped at or before T:
  what the online store served at T, built only from entries ingested by then. A late or
  corrected entry changes the versions after it arrived, never the ones before.
  Not derivable from raw (raw keeps only the latest state), so dbt never full-refreshes it.
  Users gone from gold (deleted, or every entry deleted) lose their history with them.
-#}
{{ history_model('user_journal_features', 'user_id') }}
