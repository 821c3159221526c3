{#- game_type_stats as known at each build: see user_journal_features_history. -#}
{{ history_model('game_type_stats', 'game_type_id') }}
