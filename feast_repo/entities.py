"""The things features describe: a journal app user and a game type."""

from feast import Entity, ValueType

user_entity = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A user of the journal app (raw.users.id).",
)

game_type_entity = Entity(
    name="game_type",
    join_keys=["game_type_id"],
    value_type=ValueType.INT64,
    description="A game a user can log a journal entry for (raw.game_types.id).",
)
