{#- Compiles an audience rule tree to a boolean SQL expression over the
    `profiles` (dim_profiles) and `profile_events` (fct_profile_events) CTEs.
    Every value becomes a literal of its column's type, checked here, so a
    definition can never inject SQL. -#}

{#- The attribute operators an audience may use, with their SQL. -#}
{% macro audience_attribute_operators() -%}
    {{ return({
        'equals': '=', 'not_equals': '<>', 'gt': '>', 'gte': '>=', 'lt': '<',
        'lte': '<=', 'in': 'in', 'is_null': 'is null',
        'not_null': 'is not null',
    }) }}
{%- endmacro %}


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


{% macro audience_rule_sql(audience) -%}
    {{ _rule_sql(audience.id, audience.rule, audience_attribute_types()) }}
{%- endmacro %}


{% macro _rule_sql(audience_id, rule, types) -%}
    {%- if rule is not mapping -%}
        {{ audience_error(audience_id, 'a rule node is ' ~ rule
            ~ '; write a mapping with all, any, not, attribute or event') }}
    {%- elif 'all' in rule or 'any' in rule -%}
        {%- set combinator = 'all' if 'all' in rule else 'any' -%}
        {%- set children = rule[combinator] -%}
        {%- if children is string or children is mapping
            or children is not iterable or children | length == 0 -%}
            {{ audience_error(audience_id, combinator
                ~ ' needs a non-empty list of rules') }}
        {%- endif -%}
        {%- set parts = [] -%}
        {%- for child in children -%}
            {%- do parts.append(_rule_sql(audience_id, child, types)) -%}
        {%- endfor -%}
        ({{ parts | join(' and ' if combinator == 'all' else ' or ') }})
    {%- elif 'not' in rule -%}
        (not {{ _rule_sql(audience_id, rule['not'], types) }})
    {%- elif 'attribute' in rule -%}
        {{ _attribute_sql(audience_id, rule, types) }}
    {%- elif 'event' in rule -%}
        {{ _event_sql(audience_id, rule['event']) }}
    {%- else -%}
        {{ audience_error(audience_id, 'a rule node has keys '
            ~ rule.keys() | list ~ '; use one of all, any, not, attribute, '
            ~ 'event') }}
    {%- endif -%}
{%- endmacro %}


{#- Attribute conditions are null-safe: a missing value never qualifies, and
    `not` of it does, as a marketer would read it. -#}
{% macro _attribute_sql(audience_id, rule, types) -%}
    {%- set attribute_operators = audience_attribute_operators() -%}
    {%- set attribute = rule.get('attribute') | string -%}
    {%- set operator = rule.get('operator') | string -%}
    {%- if attribute not in types -%}
        {{ audience_error(audience_id, "attribute '" ~ attribute
            ~ "' is not a dim_profiles column; use one of "
            ~ types.keys() | sort | join(', ')) }}
    {%- endif -%}
    {%- if operator not in attribute_operators -%}
        {{ audience_error(audience_id, "operator '" ~ operator
            ~ "' on attribute '" ~ attribute ~ "' is unknown; use one of "
            ~ attribute_operators.keys() | join(', ')) }}
    {%- endif -%}

    {%- set column = 'profiles.' ~ adapter.quote(attribute) -%}
    {%- set where = "attribute '" ~ attribute ~ "'" -%}
    {%- if operator in ['is_null', 'not_null'] -%}
        ({{ column }} {{ attribute_operators[operator] }})
    {%- elif operator == 'in' -%}
        {%- set values = rule.get('value') -%}
        {%- if values is string or values is mapping or values is not iterable
            or values | length == 0 -%}
            {{ audience_error(audience_id, "operator 'in' on " ~ where
                ~ ' needs value: a non-empty list') }}
        {%- endif -%}
        {%- set literals = [] -%}
        {%- for value in values -%}
            {%- do literals.append(audience_literal(
                audience_id, types[attribute], value, where)) -%}
        {%- endfor -%}
        coalesce({{ column }} in ({{ literals | join(', ') }}), false)
    {%- else -%}
        coalesce({{ column }} {{ attribute_operators[operator] }}
            {{ audience_literal(audience_id, types[attribute],
                rule.get('value'), where) }}, false)
    {%- endif -%}
{%- endmacro %}


{#- Profiles with at least min_count matching events (and, if set, at least
    min_revenue of revenue_amount) in the window that ends at the evaluation
    time; events after it are never seen, so backfills stay honest. -#}
{% macro _event_sql(audience_id, event) -%}
    {%- set event_keys = [
        'event_type', 'dataset', 'min_count', 'min_revenue', 'within_days',
    ] -%}
    {%- if event is not mapping or 'event_type' not in event -%}
        {{ audience_error(audience_id, 'an event condition needs at least '
            ~ 'event_type') }}
    {%- endif -%}
    {%- for key in event if key not in event_keys -%}
        {{ audience_error(audience_id, "event condition key '" ~ key
            ~ "' is unknown; use " ~ event_keys | join(', ')) }}
    {%- endfor -%}

    {%- set event_types = [event.event_type] if event.event_type is string
        else event.event_type -%}
    {%- if event_types is mapping or event_types is not iterable
        or event_types | length == 0 -%}
        {{ audience_error(audience_id, 'event_type must be a text or a '
            ~ 'non-empty list of texts') }}
    {%- endif -%}
    {%- set type_literals = [] -%}
    {%- for event_type in event_types -%}
        {%- do type_literals.append(audience_literal(
            audience_id, 'text', event_type, 'event_type')) -%}
    {%- endfor -%}
    {%- set min_count = audience_literal(
        audience_id, 'integer', event.get('min_count', 1), 'min_count')
        | trim -%}
    {%- if min_count | int < 1 -%}
        {{ audience_error(audience_id, 'min_count must be 1 or more; to '
            ~ 'require no such event wrap the condition in not') }}
    {%- endif -%}
    {%- set evaluated_at = audience_evaluation_time() -%}

    profiles.profile_id in (
        select profile_events.profile_id
        from profile_events
        where profile_events.profile_id is not null
            and profile_events.event_type in ({{ type_literals | join(', ') }})
        {%- if event.get('dataset') is not none %}
            and profile_events.dataset = {{ audience_literal(
                audience_id, 'text', event.dataset, 'dataset') }}
        {%- endif %}
            and profile_events.occurred_at <= {{ evaluated_at }}
        {%- if event.get('within_days') is not none %}
            and profile_events.occurred_at > {{ evaluated_at }}
                - make_interval(days => {{ audience_literal(
                    audience_id, 'integer', event.within_days, 'within_days')
                }})
        {%- endif %}
        group by profile_events.profile_id
        having count(*) >= {{ min_count }}
        {%- if event.get('min_revenue') is not none %}
            and coalesce(sum(profile_events.revenue_amount), 0)
                >= {{ audience_literal(
                    audience_id, 'numeric', event.min_revenue, 'min_revenue') }}
        {%- endif %}
    )
{%- endmacro %}


{#- A SQL literal of the declared type, or a compiler error naming the
    audience, the place and the fix. Text is quoted with quotes doubled;
    numbers, booleans, dates and instants must match their shape exactly. -#}
{% macro audience_literal(audience_id, data_type, value, where) -%}
    {%- set text = value | string -%}
    {%- set is_boolean = value is sameas true or value is sameas false -%}

    {%- if data_type == 'text' and (value is string or value is number)
        and not is_boolean -%}
        '{{ text | replace("'", "''") }}'
    {%- elif data_type == 'integer' and not is_boolean
        and modules.re.fullmatch('-?[0-9]{1,18}', text) -%}
        {{ text }}
    {%- elif data_type == 'numeric' and not is_boolean
        and modules.re.fullmatch('-?[0-9]{1,30}(\.[0-9]{1,30})?', text) -%}
        {{ text }}
    {%- elif data_type == 'boolean' and is_boolean -%}
        {{ 'true' if value else 'false' }}
    {%- elif data_type == 'date'
        and modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', text) -%}
        date '{{ text }}'
    {%- elif data_type == 'timestamptz' and modules.re.fullmatch(
        '[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}'
        ~ '(\.[0-9]+)?)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?', text) -%}
        timestamptz '{{ text }}'
    {%- else -%}
        {{ audience_error(audience_id, where ~ " has value '" ~ text
            ~ "', which is not a " ~ data_type ~ '; write a ' ~ data_type
            ~ ' value (text in quotes, numbers bare, booleans true/false, '
            ~ 'dates as YYYY-MM-DD)') }}
    {%- endif -%}
{%- endmacro %}
