{#- Why profiles are in or out of an audience: one row per profile and node
    of the rule tree (depth-first), with whether the node held at the
    evaluation time and the values that decided it. Each node's `held` is the
    SQL the build compiles for it, so explain and membership cannot drift.
    `cdp audiences explain` compiles this through `dbt compile --inline`. -#}

{#- What `cdp audiences explain` compiles: the audience as `cdp audiences
    list` shows it, and the explain SQL, as JSON. -#}
{% macro audience_explain_request(audience_id, profile_ids) -%}
    {%- set sql = audience_explain_sql(audience_id, profile_ids) -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set listed = audience_catalog()
        | selectattr('audience_id', 'equalto', audience_id) | list -%}
    {{ return(tojson({'audience': listed[0], 'sql': sql | trim})) }}
{%- endmacro %}


{% macro audience_explain_sql(audience_id, profile_ids) -%}
    {#- Called before the execute guard so dbt records the dependencies. -#}
    {%- set profiles_relation = ref('dim_profiles') -%}
    {%- set events_relation = ref('fct_profile_events') -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}

    {%- set audiences = audience_definitions() -%}
    {%- set context = audience_compile_context(audiences) -%}
    {%- if audience_id not in context.audiences -%}
        {{ exceptions.raise_compiler_error(audience_definitions_file()
            ~ ": audience '" ~ audience_id ~ "' is not defined; use one of "
            ~ context.audiences.keys() | sort | join(', ')) }}
    {%- endif -%}
    {%- set profile_literals = [] -%}
    {%- for profile_id in profile_ids -%}
        {%- do profile_literals.append(audience_literal('text', profile_id)) -%}
    {%- endfor -%}
    {%- set nodes = [] -%}
    {%- do _explain_nodes(
        context.audiences[audience_id].rule, 'rule', 0, context, nodes) -%}

with

profiles as (

    select * from {{ profiles_relation }}
    where profile_id in ({{ profile_literals | join(', ') or 'null' }})

),

profile_events as (

    select * from {{ events_relation }}
    where profile_id in ({{ profile_literals | join(', ') or 'null' }})

),

explained as (
{%- for node in nodes %}
    {%- if not loop.first %}

    union all
    {% endif %}

    select
        profiles.profile_id,
        {{ loop.index0 }} as node_number,
        {{ node.depth }} as depth,
        {{ audience_literal('text', node.place) }} as place,
        {{ audience_literal('text', node.condition) }} as condition,
        {{ node.held }} as held,
        {{ node.decided_by }} as decided_by,
        {{ context.evaluated_at }} as evaluated_at
    from profiles
{%- endfor %}

)

select * from explained
order by explained.profile_id, explained.node_number
{%- endmacro %}


{% macro _explain_nodes(node, place, depth, context, nodes) -%}
    {%- set entry = {
        'place': place,
        'depth': depth,
        'condition': audience_condition_text(node),
        'held': audience_node_sql(node, context),
    } -%}
    {%- do nodes.append(entry) -%}

    {%- if 'all' in node or 'any' in node -%}
        {%- set kind = 'all' if 'all' in node else 'any' -%}
        {%- set counted = [] -%}
        {%- for child in node[kind] -%}
            {%- do counted.append('case when '
                ~ audience_node_sql(child, context) ~ ' then 1 else 0 end') -%}
        {%- endfor -%}
        {%- do entry.update({'decided_by': '(' ~ counted | join(' + ')
            ~ ") || ' of " ~ counted | length ~ " held'"}) -%}
        {%- for child in node[kind] -%}
            {%- do _explain_nodes(child, place ~ '.' ~ kind ~ '[' ~ loop.index0
                ~ ']', depth + 1, context, nodes) -%}
        {%- endfor -%}
    {%- elif 'not' in node -%}
        {%- do entry.update({'decided_by': "case when "
            ~ audience_node_sql(node['not'], context)
            ~ " then 'the condition inside held' "
            ~ "else 'the condition inside did not hold' end"}) -%}
        {%- do _explain_nodes(
            node['not'], place ~ '.not', depth + 1, context, nodes) -%}
    {%- elif 'attribute' in node -%}
        {%- do entry.update({'decided_by': audience_literal('text',
            node.attribute ~ ' is ') ~ ' || coalesce(cast(profiles.'
            ~ adapter.quote(node.attribute) ~ " as text), 'no value')"}) -%}
    {%- elif 'event' in node -%}
        {%- do entry.update(
            {'decided_by': _explain_event_values(node.event, context)}) -%}
    {%- else -%}
        {%- do entry.update(
            {'decided_by': _explain_membership(node.audience, context)}) -%}
        {%- do _explain_nodes(context.audiences[node.audience.id].rule,
            node.audience.id ~ '.rule', depth + 1, context, nodes) -%}
    {%- endif -%}
{%- endmacro %}


{#- The count of matching events in the window and, for sum/min/max, the
    aggregate the threshold compared. -#}
{% macro _explain_event_values(event, context) -%}
    {%- set threshold = audience_event_threshold(event) -%}
    {%- set shown = ["count(*) || ' matching events'"] -%}
    {%- if threshold.kind != 'count' -%}
        {%- do shown.append("', " ~ audience_aggregate_text(threshold)
            ~ " ' || coalesce(cast(" ~ threshold.aggregate
            ~ " as text), 'none')") -%}
    {%- endif -%}
    {{ return('(select ' ~ shown | join(' || ') ~ ' from profile_events where '
        ~ audience_event_filters(event, context) | join(' and ')
        ~ ' and profile_events.profile_id = profiles.profile_id)') }}
{%- endmacro %}


{% macro _explain_membership(reference, context) -%}
    {%- set now = audience_node_sql(
        context.audiences[reference.id].rule, context) -%}
    {%- set said = "case when " ~ now ~ " then 'in it now' "
        ~ "else 'not in it now' end" -%}
    {%- if 'within_last' in reference -%}
        {%- set said = said ~ " || case when "
            ~ audience_history_sql(reference, context)
            ~ " then '; in its history within the window' "
            ~ "else '; not in its history within the window' end" -%}
    {%- endif -%}
    {{ return(said) }}
{%- endmacro %}


{#- A node in words, for explain: "tier in gold, platinum",
    "at least 3 product_view events in the last 7 days". -#}
{% macro audience_condition_text(node) -%}
    {%- if 'all' in node -%}
        {{ return('all of') }}
    {%- elif 'any' in node -%}
        {{ return('any of') }}
    {%- elif 'not' in node -%}
        {{ return('not') }}
    {%- elif 'attribute' in node -%}
        {{ return(node.attribute ~ ' ' ~ _operator_text(node)) }}
    {%- elif 'event' in node -%}
        {{ return(_event_text(node.event)) }}
    {%- endif -%}
    {%- set reference = node.audience -%}
    {{ return('in audience ' ~ reference.id
        ~ (' now or at any time in the last '
            ~ audience_duration_text(reference.within_last)
            if 'within_last' in reference else ' now')) }}
{%- endmacro %}


{% macro _operator_text(condition) -%}
    {%- set operator = condition.operator -%}
    {%- set value = condition.get('value') -%}
    {%- set words = {'equals': 'equals', 'not_equals': 'is not', 'in': 'in',
        'not_in': 'not in', 'gt': 'greater than', 'gte': 'at least',
        'lt': 'less than', 'lte': 'at most', 'contains': 'contains',
        'starts_with': 'starts with'} -%}
    {%- if operator == 'is_null' -%}
        {{ return('has no value') }}
    {%- elif operator == 'not_null' -%}
        {{ return('has a value') }}
    {%- elif operator == 'between' -%}
        {{ return('between ' ~ value['from'] ~ ' and ' ~ value['to']) }}
    {%- elif operator == 'within_last' -%}
        {{ return('within the last ' ~ audience_duration_text(value)) }}
    {%- elif operator == 'more_than_ago' -%}
        {{ return('more than ' ~ audience_duration_text(value) ~ ' ago') }}
    {%- elif operator in ['in', 'not_in'] -%}
        {{ return(words[operator] ~ ' ' ~ value | join(', ')) }}
    {%- endif -%}
    {{ return(words[operator] ~ ' ' ~ (value | string | lower
        if value is sameas true or value is sameas false else value)) }}
{%- endmacro %}


{% macro _event_text(event) -%}
    {%- set threshold = audience_event_threshold(event) -%}
    {%- set words = {'gte': 'at least', 'gt': 'more than', 'lte': 'at most',
        'lt': 'fewer than', 'equals': 'exactly'} -%}
    {%- set text = audience_event_name(event) ~ ' events' -%}
    {%- if 'count' in event -%}
        {%- set text = words[threshold.comparison] ~ ' ' ~ threshold.value
            ~ ' ' ~ text -%}
    {%- endif -%}
    {%- if 'dataset' in event and 'event_type' in event -%}
        {%- set text = text ~ ' from ' ~ event.dataset -%}
    {%- endif -%}
    {%- set filters = [] -%}
    {%- for filter in event.get('where', []) -%}
        {%- do filters.append(filter.field ~ ' ' ~ _operator_text(filter)) -%}
    {%- endfor -%}
    {%- if filters -%}
        {%- set text = text ~ ' where ' ~ filters | join(' and ') -%}
    {%- endif -%}
    {%- if 'within_last' in event -%}
        {%- set text = text ~ ' in the last '
            ~ audience_duration_text(event.within_last) -%}
    {%- elif 'between' in event -%}
        {%- set text = text ~ ' between ' ~ event.between['from'] ~ ' and '
            ~ event.between['to'] -%}
    {%- endif -%}
    {%- if threshold.kind != 'count' -%}
        {%- set text = text ~ ', ' ~ audience_aggregate_text(threshold) ~ ' '
            ~ words[threshold.comparison] ~ ' ' ~ threshold.value -%}
    {%- endif -%}
    {{ return(text) }}
{%- endmacro %}


{#- "total revenue_amount", "smallest revenue_amount", ... -#}
{% macro audience_aggregate_text(threshold) -%}
    {%- set words = {'sum': 'total', 'min': 'smallest', 'max': 'largest'} -%}
    {{ return(words[threshold.kind] ~ ' ' ~ threshold.field) }}
{%- endmacro %}
