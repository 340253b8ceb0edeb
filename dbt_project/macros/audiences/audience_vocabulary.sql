{#- What an audience rule may name: profile attributes, event fields, event
    datasets and their event types, operators, thresholds and windows. Every
    identifier in compiled SQL comes from these lists, never from a definition.
    Unit tests override the macros that read dbt's graph
    (audience_attribute_types, audience_event_datasets). -#}

{#- The type of every dim_profiles column an audience may test: the fixed
    profile columns plus every declared profile attribute. -#}
{% macro audience_attribute_types() -%}
    {%- set types = {
        'profile_id': 'text', 'anchor_namespace': 'text',
        'is_anonymous': 'boolean', 'customer_id': 'text', 'loyalty_id': 'text',
        'email': 'text', 'email_sha256': 'text', 'phone_e164': 'text',
        'identity_count': 'integer', 'email_count': 'integer',
        'phone_count': 'integer', 'device_count': 'integer',
        'first_seen_at': 'timestamptz', 'last_seen_at': 'timestamptz',
    } -%}
    {%- for attribute in profile_attribute_columns(
        declared_datasets(kind='record')) -%}
        {%- do types.update({attribute.name: attribute.data_type}) -%}
    {%- endfor -%}
    {{ return(types) }}
{%- endmacro %}


{#- The fct_profile_events columns an event condition may filter on or
    aggregate. occurred_at is left out on purpose: the window says which
    events count. -#}
{% macro audience_event_field_types() -%}
    {%- set types = {
        'event_id': 'text', 'dataset': 'text', 'event_type': 'text',
    } -%}
    {%- for event_column in profile_event_columns() -%}
        {%- do types.update({event_column.name: event_column.type}) -%}
    {%- endfor -%}
    {{ return(types) }}
{%- endmacro %}


{#- Each profile-enabled event dataset with the event types it can hold: its
    declared constant, or the allowed values of its event type column; none
    when the declaration does not say (any type is then accepted). -#}
{% macro audience_event_datasets() -%}
    {%- set datasets = {} -%}
    {%- for dataset in declared_datasets(kind='event') -%}
        {%- set found = namespace(event_types=none) -%}
        {%- if dataset.event_type -%}
            {%- set found.event_types = [dataset.event_type] -%}
        {%- endif -%}
        {%- for column in dataset.columns
            if column.name == dataset.event_type_column
            and column.allowed_values -%}
            {%- set found.event_types = column.allowed_values | list -%}
        {%- endfor -%}
        {%- do datasets.update({dataset.name: found.event_types}) -%}
    {%- endfor -%}
    {{ return(datasets) }}
{%- endmacro %}


{#- Condition operators, for attributes and event `where` filters alike:
    the value each takes and the column types it applies to. -#}
{% macro audience_operators() -%}
    {%- set any_type = ['text', 'integer', 'numeric', 'boolean', 'date',
        'timestamptz'] -%}
    {%- set ordered = ['integer', 'numeric', 'date', 'timestamptz'] -%}
    {%- set moments = ['date', 'timestamptz'] -%}
    {{ return({
        'equals': {'value': 'one', 'types': any_type},
        'not_equals': {'value': 'one', 'types': any_type},
        'in': {'value': 'list', 'types': any_type},
        'not_in': {'value': 'list', 'types': any_type},
        'gt': {'value': 'one', 'types': ordered},
        'gte': {'value': 'one', 'types': ordered},
        'lt': {'value': 'one', 'types': ordered},
        'lte': {'value': 'one', 'types': ordered},
        'between': {'value': 'range', 'types': ordered},
        'is_null': {'value': 'none', 'types': any_type},
        'not_null': {'value': 'none', 'types': any_type},
        'contains': {'value': 'one', 'types': ['text']},
        'starts_with': {'value': 'one', 'types': ['text']},
        'within_last': {'value': 'duration', 'types': moments},
        'more_than_ago': {'value': 'duration', 'types': moments},
    }) }}
{%- endmacro %}


{#- How an event threshold compares its count or aggregate. -#}
{% macro audience_comparisons() -%}
    {{ return({'gte': '>=', 'gt': '>', 'lte': '<=', 'lt': '<',
        'equals': '='}) }}
{%- endmacro %}


{#- Windows and durations count whole days or hours, up to a hundred years. -#}
{% macro audience_duration_units() -%}
    {{ return({'days': 36500, 'hours': 876000}) }}
{%- endmacro %}


{#- Streaming audiences may look back at most this many hours (Adobe's
    rule). -#}
{% macro audience_streaming_max_hours() -%}
    {{ return(24) }}
{%- endmacro %}
