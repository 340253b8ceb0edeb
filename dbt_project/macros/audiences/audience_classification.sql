{#- Streaming or batch, by fixed rules modelled on Adobe's streaming
    segmentation (docs/audiences.md). An audience streams when its rule uses
    only profile attributes; or one event condition counted as events arrive;
    or several event conditions, each looking back at most 24 hours; or such
    events plus attributes; or membership (now) of streaming audiences with
    attributes. Anything else is batch, and the reason says which part.
    Nothing is cached: each compile classifies the definitions as written. -#}

{% macro audience_evaluation_mode(audience, by_id) -%}
    {%- set facts = audience_rule_facts(audience.rule) -%}
    {%- set reasons = [] -%}
    {%- for event in facts.events -%}
        {%- do reasons.extend(
            _event_batch_reasons(event, facts.events | length)) -%}
    {%- endfor -%}
    {%- for reference in facts.references -%}
        {%- do reasons.extend(
            _reference_batch_reasons(reference, facts, by_id)) -%}
    {%- endfor -%}

    {%- if reasons -%}
        {{ return({'mode': 'batch',
            'reason': 'batch: ' ~ reasons | unique | join('; ')}) }}
    {%- endif -%}
    {{ return({'mode': 'streaming',
        'reason': 'streaming: ' ~ _streaming_description(facts)}) }}
{%- endmacro %}


{#- At most one reason per event condition, naming everything about it that
    streaming cannot follow. -#}
{% macro _event_batch_reasons(event, event_count) -%}
    {%- set max_hours = audience_streaming_max_hours() -%}
    {%- set aggregates = {'sum': 'sums ', 'min': 'takes the smallest ',
        'max': 'takes the largest '} -%}
    {%- set parts = [] -%}
    {%- if event.negated -%}
        {%- do parts.append('is inside not (leaving by the absence of events '
            ~ 'needs time to pass)') -%}
    {%- endif -%}
    {%- if event.kind != 'count' -%}
        {%- do parts.append(aggregates[event.kind] ~ event.field
            ~ ' (streaming counts events only)') -%}
    {%- endif -%}
    {%- if event.holds_without_events -%}
        {%- do parts.append('also holds for profiles without such events '
            ~ '(streaming only sees profiles with a new event)') -%}
    {%- endif -%}
    {%- if event.window == 'between' -%}
        {%- do parts.append('counts events between fixed dates (streaming '
            ~ 'windows end now and look back at most ' ~ max_hours
            ~ ' hours)') -%}
    {%- elif event.window_hours and event.window_hours > max_hours -%}
        {%- do parts.append('looks back ' ~ event.window_text
            ~ ' (streaming allows at most ' ~ max_hours ~ ' hours)') -%}
    {%- elif event_count > 1 and not event.window_hours -%}
        {%- do parts.append('has no window while the rule has ' ~ event_count
            ~ ' event conditions (several events stream only when each looks '
            ~ 'back at most ' ~ max_hours ~ ' hours)') -%}
    {%- endif -%}
    {{ return(['the ' ~ event.name ~ ' condition ' ~ parts | join(' and ')]
        if parts else []) }}
{%- endmacro %}


{% macro _reference_batch_reasons(reference, facts, by_id) -%}
    {%- set reasons = [] -%}
    {%- set other = "audience '" ~ reference.id ~ "'" -%}
    {%- if reference.window_text -%}
        {%- do reasons.append('membership of ' ~ other ~ ' at any time in the '
            ~ 'last ' ~ reference.window_text
            ~ ' reads the membership history') -%}
        {{ return(reasons) }}
    {%- endif -%}
    {%- set used = audience_evaluation_mode(by_id[reference.id], by_id) -%}
    {%- if used.mode == 'batch' -%}
        {%- do reasons.append('it uses ' ~ other ~ ', which is batch') -%}
    {%- elif facts.events -%}
        {%- do reasons.append('membership of ' ~ other ~ ' is combined with '
            ~ 'an event condition') -%}
    {%- elif reference.negated
        and _audience_uses_events(reference.id, by_id) -%}
        {%- do reasons.append('membership of ' ~ other ~ ' is inside not and '
            ~ other ~ ' has event conditions') -%}
    {%- endif -%}
    {{ return(reasons) }}
{%- endmacro %}


{% macro _audience_uses_events(audience_id, by_id) -%}
    {%- set facts = audience_rule_facts(by_id[audience_id].rule) -%}
    {%- set uses = namespace(events=facts.events | length > 0) -%}
    {%- for reference in facts.references
        if _audience_uses_events(reference.id, by_id) -%}
        {%- set uses.events = true -%}
    {%- endfor -%}
    {{ return(uses.events) }}
{%- endmacro %}


{% macro _streaming_description(facts) -%}
    {%- set parts = [] -%}
    {%- set events = facts.events -%}
    {%- if events | length == 1 and not events[0].window_hours -%}
        {%- do parts.append('an incoming ' ~ events[0].name ~ ' event') -%}
    {%- elif events | length == 1 -%}
        {%- do parts.append(events[0].name ~ ' events within the last '
            ~ events[0].window_text) -%}
    {%- elif events -%}
        {%- do parts.append(events | length ~ ' event conditions, each within '
            ~ audience_streaming_max_hours() ~ ' hours') -%}
    {%- endif -%}
    {%- if facts.references -%}
        {%- do parts.append('membership of streaming audience '
            ~ facts.references | map(attribute='id') | unique | join(', ')) -%}
    {%- endif -%}
    {%- if facts.attributes -%}
        {%- do parts.append('profile attributes') -%}
    {%- endif -%}
    {{ return(parts | join(' plus ')
        ~ (' only' if parts == ['profile attributes'] else '')) }}
{%- endmacro %}


{#- What the classification reads from a rule tree: its event conditions,
    audience references (each marked when inside not) and attribute count. -#}
{% macro audience_rule_facts(rule) -%}
    {%- set facts = {'events': [], 'references': [], 'attributes': []} -%}
    {%- do _collect_facts(rule, false, facts) -%}
    {{ return({'events': facts.events, 'references': facts.references,
        'attributes': facts.attributes | length}) }}
{%- endmacro %}


{% macro _collect_facts(node, negated, facts) -%}
    {%- if 'all' in node or 'any' in node -%}
        {%- for child in node.get('all') or node.get('any') -%}
            {%- do _collect_facts(child, negated, facts) -%}
        {%- endfor -%}
    {%- elif 'not' in node -%}
        {%- do _collect_facts(node['not'], true, facts) -%}
    {%- elif 'attribute' in node -%}
        {%- do facts.attributes.append(node.attribute) -%}
    {%- elif 'event' in node -%}
        {%- set event = node.event -%}
        {%- set threshold = audience_event_threshold(event) -%}
        {%- set window = 'between' if 'between' in event else none -%}
        {%- set hours = audience_duration_hours(event.within_last)
            if 'within_last' in event else none -%}
        {%- do facts.events.append({
            'name': audience_event_name(event),
            'negated': negated,
            'kind': threshold.kind,
            'field': threshold.field,
            'holds_without_events': threshold.holds_without_events,
            'window': window,
            'window_hours': hours,
            'window_text': audience_duration_text(event.within_last)
                if hours else none,
        }) -%}
    {%- else -%}
        {%- do facts.references.append({
            'id': node.audience.id,
            'negated': negated,
            'window_text': audience_duration_text(node.audience.within_last)
                if 'within_last' in node.audience else none,
        }) -%}
    {%- endif -%}
{%- endmacro %}


{#- How reasons and explain name an event condition: its event types, else
    its dataset. -#}
{% macro audience_event_name(event) -%}
    {%- if 'event_type' in event -%}
        {{ return(([event.event_type] if event.event_type is string
            else event.event_type) | join(' or ')) }}
    {%- endif -%}
    {{ return(event.get('dataset') or 'any') }}
{%- endmacro %}


{% macro audience_duration_hours(duration) -%}
    {{ return(duration.get('days', 0) | int * 24
        + duration.get('hours', 0) | int) }}
{%- endmacro %}


{% macro audience_duration_text(duration) -%}
    {%- set unit = (duration.keys() | list)[0] -%}
    {%- set amount = duration[unit] | int -%}
    {{ return(amount ~ ' ' ~ (unit[:-1] if amount == 1 else unit)) }}
{%- endmacro %}


{#- Every valid audience with its metadata and classification, for
    `cdp audiences list|check` (compiled through `dbt compile --inline`). -#}
{% macro audience_catalog() -%}
    {%- set audiences = audience_definitions() -%}
    {%- set by_id = audiences_by_id(audiences) -%}
    {%- set catalog = [] -%}
    {%- for audience in audiences -%}
        {%- set mode = audience_evaluation_mode(audience, by_id) -%}
        {%- do catalog.append({
            'audience_id': audience.id,
            'audience_name': audience.name,
            'owner': audience.owner,
            'description': audience.description,
            'evaluation_mode': mode.mode,
            'evaluation_reason': mode.reason,
        }) -%}
    {%- endfor -%}
    {{ return(catalog) }}
{%- endmacro %}


{#- The ids of the audiences classified streaming, for the streaming DAG. -#}
{% macro streaming_audience_ids() -%}
    {{ return(audience_catalog() | selectattr('evaluation_mode', 'equalto',
        'streaming') | map(attribute='audience_id') | list) }}
{%- endmacro %}
