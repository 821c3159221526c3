select
    id as game_type_id,
    name as game_type_name,
    category,
    created_at,
    updated_at,
    _ingested_at
from {{ source('raw', 'game_types') }}
