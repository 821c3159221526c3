select
    id as user_id,
    name as user_name,
    email,
    created_at,
    updated_at,
    _ingested_at
from {{ source('raw', 'users') }}
