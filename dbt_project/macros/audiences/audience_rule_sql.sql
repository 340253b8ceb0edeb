{#- Compiles a validated audience rule tree to a boolean SQL expression over
    the `profiles` (dim_profiles) and `profile_events` (fct_profile_events)
    CTEs of the calling model. Identifiers come from the vocabulary, values
    through audience_literal; callers validate first (audience_definitions). -#}

{#- What compiling needs, gathered once per model. -#}
{% macro audience_compile_context(audiences) -%}
    {{ return({
        'attributes': audience_attribute_types(),
        'event_fields': audience_event_field_types(),
        'audiences': audiences_by_id(audiences),
        'evaluated_at': audience_evaluation_time() | trim,
    }) }}
{%- endmacro %}


{% macro audience_rule_sql(audience, context) -%}
    {{ return(audience_node_sql(audience.rule, context)) }}
{%- endmacro %}


{% macro audience_node_sql(node, context) -%}
    {%- if 'all' in node or 'any' in node -%}
        {%- set kind = 'all' if 'all' in node else 'any' -%}
        {%- set parts = [] -%}
        {%- for child in node[kind] -%}
            {%- do parts.append(audience_node_sql(child, context)) -%}
        {%- endfor -%}
        {%- set sql = '(' ~ parts | join('\n        '
            ~ ('and ' if kind == 'all' else 'or ')) ~ ')' -%}
    {%- elif 'not' in node -%}
        {%- set sql = '(not '
            ~ audience_node_sql(node['not'], context) ~ ')' -%}
    {%- elif 'attribute' in node -%}
        {%- set sql = audience_condition_sql(
            'profiles.' ~ adapter.quote(node.attribute),
            context.attributes[node.attribute], node, context) -%}
    {%- elif 'event' in node -%}
        {%- set sql = audience_event_sql(node.event, context) -%}
    {%- else -%}
        {%- set sql = audience_membership_sql(node.audience, context) -%}
    {%- endif -%}
    {{ return(sql) }}
{%- endmacro %}


{#- One operator on one column, null-safe: a missing value never satisfies a
    condition (so `not` of it does), as a marketer would read it. -#}
{% macro audience_condition_sql(column, data_type, condition, context) -%}
    {%- set operator = condition.operator -%}
    {%- set value = condition.get('value') -%}
    {%- set comparisons = {'equals': '=', 'not_equals': '<>', 'gt': '>',
        'gte': '>=', 'lt': '<', 'lte': '<='} -%}

    {%- if operator in ['is_null', 'not_null'] -%}
        {{ return('(' ~ column ~ (' is null)' if operator == 'is_null'
            else ' is not null)')) }}
    {%- endif -%}

    {%- if operator in ['in', 'not_in'] -%}
        {%- set literals = [] -%}
        {%- for item in value -%}
            {%- do literals.append(audience_literal(data_type, item)) -%}
        {%- endfor -%}
        {%- set test = column
            ~ (' not in (' if operator == 'not_in' else ' in (')
            ~ literals | join(', ') ~ ')' -%}
    {%- elif operator == 'between' -%}
        {%- set test = column ~ ' between '
            ~ audience_literal(data_type, value['from']) ~ ' and '
            ~ audience_literal(data_type, value['to']) -%}
    {%- elif operator == 'contains' -%}
        {%- set test = 'strpos(' ~ column ~ ', '
            ~ audience_literal('text', value) ~ ') > 0' -%}
    {%- elif operator == 'starts_with' -%}
        {%- set test = 'starts_with(' ~ column ~ ', '
            ~ audience_literal('text', value) ~ ')' -%}
    {%- elif operator in ['within_last', 'more_than_ago'] -%}
        {#- A date counts from midnight UTC. -#}
        {%- set moment = column if data_type == 'timestamptz'
            else '(cast(' ~ column ~ " as timestamp) at time zone 'UTC')" -%}
        {%- set start = '(' ~ context.evaluated_at ~ ' - '
            ~ audience_interval_sql(value) ~ ')' -%}
        {%- set test = moment ~ ' > ' ~ start ~ ' and ' ~ moment ~ ' <= '
            ~ context.evaluated_at if operator == 'within_last'
            else moment ~ ' <= ' ~ start -%}
    {%- else -%}
        {%- set test = column ~ ' ' ~ comparisons[operator] ~ ' '
            ~ audience_literal(data_type, value) -%}
    {%- endif -%}
    {{ return('coalesce(' ~ test ~ ', false)') }}
{%- endmacro %}


{#- {days: N} or {hours: N} as an interval. -#}
{% macro audience_interval_sql(duration) -%}
    {%- set unit = (duration.keys() | list)[0] -%}
    {{ return('make_interval(' ~ unit ~ ' => ' ~ duration[unit] | int ~ ')') }}
{%- endmacro %}


{#- Profiles whose matching events, up to the evaluation time, meet the
    threshold. Events after the evaluation time are never seen, so backfills
    stay honest. A threshold that no events at all would meet (count lt 2,
    sum lte 50) keeps the profiles with no matching event too. -#}
{% macro audience_event_sql(event, context) -%}
    {%- set threshold = audience_event_threshold(event) -%}
    {%- set matching = 'select profile_events.profile_id\n'
        ~ '            from profile_events\n            where '
        ~ audience_event_filters(event, context)
            | join('\n                and ')
        ~ '\n            group by profile_events.profile_id'
        ~ '\n            having ' -%}
    {%- if threshold.holds_without_events -%}
        {{ return('profiles.profile_id not in (\n            ' ~ matching
            ~ 'not (' ~ threshold.test ~ '))') }}
    {%- endif -%}
    {{ return('profiles.profile_id in (\n            ' ~ matching
        ~ 'coalesce(' ~ threshold.test ~ ', false))') }}
{%- endmacro %}


{#- The where-conditions that pick an event condition's events. -#}
{% macro audience_event_filters(event, context) -%}
    {%- set filters = [
        'profile_events.profile_id is not null',
        'profile_events.occurred_at <= ' ~ context.evaluated_at,
    ] -%}
    {%- if 'within_last' in event -%}
        {%- do filters.append('profile_events.occurred_at > '
            ~ context.evaluated_at ~ ' - '
            ~ audience_interval_sql(event.within_last)) -%}
    {%- elif 'between' in event -%}
        {%- do filters.append("profile_events.occurred_at >= timestamptz '"
            ~ audience_instant(event.between['from']).isoformat() ~ "'") -%}
        {%- do filters.append("profile_events.occurred_at < timestamptz '"
            ~ audience_window_end(event.between['to']).isoformat() ~ "'") -%}
    {%- endif -%}
    {%- if 'event_type' in event -%}
        {%- set event_types = [event.event_type] if event.event_type is string
            else event.event_type -%}
        {%- set literals = [] -%}
        {%- for event_type in event_types -%}
            {%- do literals.append(audience_literal('text', event_type)) -%}
        {%- endfor -%}
        {%- do filters.append('profile_events.event_type in ('
            ~ literals | join(', ') ~ ')') -%}
    {%- endif -%}
    {%- if 'dataset' in event -%}
        {%- do filters.append('profile_events.dataset = '
            ~ audience_literal('text', event.dataset)) -%}
    {%- endif -%}
    {%- for filter in event.get('where', []) -%}
        {%- do filters.append(audience_condition_sql(
            'profile_events.' ~ adapter.quote(filter.field),
            context.event_fields[filter.field], filter, context)) -%}
    {%- endfor -%}
    {{ return(filters) }}
{%- endmacro %}


{#- The threshold of an event condition: what it aggregates, the SQL test,
    and whether a profile without matching events meets it. -#}
{% macro audience_event_threshold(event) -%}
    {%- set comparisons = audience_comparisons() -%}
    {%- set kinds = ['count', 'sum', 'min', 'max'] | select('in', event)
        | list -%}
    {%- set kind = kinds[0] if kinds else 'count' -%}
    {%- set threshold = event[kind] if kinds else {'gte': 1} -%}
    {%- set comparison = comparisons.keys() | select('in', threshold)
        | first -%}
    {%- set value = threshold[comparison] -%}

    {%- if kind == 'count' -%}
        {%- set aggregate = 'count(*)' -%}
        {%- set literal = audience_literal('integer', value) -%}
    {%- else -%}
        {%- set column = 'profile_events.' ~ adapter.quote(threshold.field) -%}
        {%- set aggregate = 'coalesce(sum(' ~ column ~ '), 0)' if kind == 'sum'
            else kind ~ '(' ~ column ~ ')' -%}
        {%- set literal = audience_literal('numeric', value) -%}
    {%- endif -%}

    {%- set limit = value | float -%}
    {%- set zero_meets = {'gte': 0 >= limit, 'gt': 0 > limit, 'lte': 0 <= limit,
        'lt': 0 < limit, 'equals': 0 == limit}[comparison] -%}
    {{ return({
        'kind': kind,
        'field': threshold.get('field'),
        'comparison': comparison,
        'value': value,
        'aggregate': aggregate,
        'test': aggregate ~ ' ' ~ comparisons[comparison] ~ ' ' ~ literal,
        'holds_without_events': kind in ['count', 'sum'] and zero_meets,
    }) }}
{%- endmacro %}


{#- Membership of another audience: its rule compiled inline (realised now),
    or, with within_last, also any history range overlapping the window. -#}
{% macro audience_membership_sql(reference, context) -%}
    {%- set now = audience_node_sql(
        context.audiences[reference.id].rule, context) -%}
    {%- if 'within_last' not in reference -%}
        {{ return('(' ~ now ~ ')') }}
    {%- endif -%}
    {{ return('(' ~ now ~ '\n        or '
        ~ audience_history_sql(reference, context) ~ ')') }}
{%- endmacro %}


{#- In the audience at some instant of (evaluation time - N, evaluation
    time], by the membership history. -#}
{% macro audience_history_sql(reference, context) -%}
    {{ return('profiles.profile_id in (\n            '
        ~ 'select membership_history.profile_id\n            from '
        ~ audience_membership_history() ~ ' as membership_history\n'
        ~ '            where membership_history.audience_id = '
        ~ audience_literal('text', reference.id)
        ~ '\n                and membership_history.valid_from <= '
        ~ context.evaluated_at
        ~ '\n                and coalesce(membership_history.valid_to > '
        ~ context.evaluated_at ~ ' - '
        ~ audience_interval_sql(reference.within_last) ~ ', true))') }}
{%- endmacro %}
