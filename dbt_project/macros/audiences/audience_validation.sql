{#- Validation of audience definitions, before anything is compiled or run.
    Every problem of every audience is collected, each naming the audience, the
    place in its rule tree (rule.all[1].event.where[0]) and the fix;
    audience_definitions() raises them together. -#}

{% macro audience_problems(audiences) -%}
    {%- set problems = [] -%}
    {%- if audiences is string or audiences is mapping
        or audiences is not iterable -%}
        {%- do problems.append('config.meta.audiences is not a list; write '
            ~ 'one list entry per audience') -%}
        {{ return(problems) }}
    {%- endif -%}

    {%- set vocabulary = {
        'attributes': audience_attribute_types(),
        'event_fields': audience_event_field_types(),
        'datasets': audience_event_datasets(),
        'audience_ids': _audience_ids(audiences),
    } -%}
    {%- set seen = [] -%}
    {%- for audience in audiences -%}
        {%- set label = _audience_label(audience, loop.index) -%}
        {%- do _check_audience_metadata(label, audience, seen, problems) -%}
        {%- if audience is mapping and audience.get('rule') is not none -%}
            {%- do _check_rule_node(
                label, audience.rule, 'rule', vocabulary, problems) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- for cycle in _audience_cycles(audiences) -%}
        {%- do _problem(problems, "audience '" ~ cycle[0] ~ "'", 'rule',
            'audiences use each other in a cycle: ' ~ cycle | join(' -> '),
            'remove one of these audience conditions') -%}
    {%- endfor -%}
    {{ return(problems) }}
{%- endmacro %}


{% macro _problem(problems, label, place, problem, fix) -%}
    {%- do problems.append(
        label ~ ', ' ~ place ~ ': ' ~ problem ~ '; ' ~ fix) -%}
{%- endmacro %}


{% macro _audience_label(audience, position) -%}
    {%- if audience is mapping and audience.get('id') is string
        and audience.get('id') | trim != '' -%}
        {{ return("audience '" ~ audience.id ~ "'") }}
    {%- endif -%}
    {{ return('audience #' ~ position ~ ' (no id)') }}
{%- endmacro %}


{% macro _audience_ids(audiences) -%}
    {%- set ids = [] -%}
    {%- for audience in audiences
        if audience is mapping and audience.get('id') is string -%}
        {%- do ids.append(audience.id) -%}
    {%- endfor -%}
    {{ return(ids) }}
{%- endmacro %}


{% macro _check_audience_metadata(label, audience, seen, problems) -%}
    {%- set keys = ['id', 'name', 'description', 'owner', 'rule'] -%}
    {%- if audience is not mapping -%}
        {%- do _problem(problems, label, 'entry', 'is not a mapping',
            'give each audience ' ~ keys | join(', ')) -%}
        {{ return(none) }}
    {%- endif -%}

    {%- for key in audience if key not in keys -%}
        {%- do _problem(problems, label, key, "key '" ~ key ~ "' is unknown",
            'use only ' ~ keys | join(', ')) -%}
    {%- endfor -%}
    {%- set audience_id = audience.get('id') -%}
    {%- if audience_id is not string
        or not modules.re.fullmatch('[a-z][a-z0-9_]{0,62}', audience_id) -%}
        {%- do _problem(problems, label, 'id',
            'is missing or not lower_snake_case',
            'write letters, digits and underscores, starting with a letter, '
            ~ 'at most 63 characters') -%}
    {%- elif audience_id in seen -%}
        {%- do _problem(problems, label, 'id',
            'is used by an earlier audience too',
            'give each audience its own id') -%}
    {%- endif -%}
    {%- do seen.append(audience_id) -%}

    {%- for key in ['name', 'description', 'owner'] -%}
        {%- if audience.get(key) is not string
            or audience.get(key) | trim == '' -%}
            {%- do _problem(problems, label, key, 'is missing',
                'give it a non-empty text') -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if audience.get('rule') is none -%}
        {%- do _problem(problems, label, 'rule', 'is missing',
            'give it one condition: all, any, not, attribute, event or '
            ~ 'audience') -%}
    {%- endif -%}
{%- endmacro %}


{% macro _check_rule_node(label, node, place, vocabulary, problems) -%}
    {%- set kinds = ['all', 'any', 'not', 'attribute', 'event', 'audience'] -%}
    {%- if node is not mapping -%}
        {%- do _problem(problems, label, place, "is '" ~ node ~ "'",
            'write a mapping with one of ' ~ kinds | join(', ')) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set found = kinds | select('in', node) | list -%}
    {%- if found | length != 1 -%}
        {%- do _problem(problems, label, place,
            'has ' ~ (found | join(' and ') if found else 'keys '
                ~ node.keys() | join(', ') ~ ' but no condition'),
            'give it exactly one of ' ~ kinds | join(', ')
            ~ (', and list several under all or any' if found else '')) -%}
        {{ return(none) }}
    {%- endif -%}

    {%- set kind = found[0] -%}
    {%- set keys = ['attribute', 'operator', 'value']
        if kind == 'attribute' else [kind] -%}
    {%- for key in node if key not in keys -%}
        {%- do _problem(problems, label, place,
            "key '" ~ key ~ "' is unknown in " ~ kind ~ ' condition',
            'use only ' ~ keys | join(', ')) -%}
    {%- endfor -%}

    {%- if kind in ['all', 'any'] -%}
        {%- set children = node[kind] -%}
        {%- if children is string or children is mapping
            or children is not iterable or children | length == 0 -%}
            {%- do _problem(problems, label, place ~ '.' ~ kind,
                'is not a list of conditions',
                'list one or more conditions under ' ~ kind) -%}
        {%- else -%}
            {%- for child in children -%}
                {%- do _check_rule_node(label, child,
                    place ~ '.' ~ kind ~ '[' ~ loop.index0 ~ ']',
                    vocabulary, problems) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- elif kind == 'not' -%}
        {%- do _check_rule_node(
            label, node['not'], place ~ '.not', vocabulary, problems) -%}
    {%- elif kind == 'attribute' -%}
        {%- do _check_attribute(label, node, place, vocabulary, problems) -%}
    {%- elif kind == 'event' -%}
        {%- do _check_event(
            label, node.event, place ~ '.event', vocabulary, problems) -%}
    {%- else -%}
        {%- do _check_audience_reference(
            label, node.audience, place ~ '.audience', vocabulary, problems) -%}
    {%- endif -%}
{%- endmacro %}


{% macro _check_attribute(label, node, place, vocabulary, problems) -%}
    {%- set attribute = node.attribute -%}
    {%- set data_type = none -%}
    {%- if attribute is string and attribute in vocabulary.attributes -%}
        {%- set data_type = vocabulary.attributes[attribute] -%}
    {%- else -%}
        {%- do _problem(problems, label, place,
            "attribute '" ~ attribute ~ "' is not a dim_profiles column",
            'use one of '
            ~ vocabulary.attributes.keys() | sort | join(', ')) -%}
    {%- endif -%}
    {%- do _check_condition(label, place, "attribute '" ~ attribute ~ "'",
        data_type, node, problems) -%}
{%- endmacro %}


{#- An operator and its value, on an attribute or an event field. -#}
{% macro _check_condition(
    label, place, subject, data_type, holder, problems) -%}
    {%- set operators = audience_operators() -%}
    {%- set operator = holder.get('operator') -%}
    {%- if operator is not string or operator not in operators -%}
        {%- do _problem(problems, label, place,
            "operator '" ~ operator ~ "' on " ~ subject ~ ' is unknown',
            'use one of ' ~ operators.keys() | join(', ')) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if data_type is none -%}
        {{ return(none) }}
    {%- endif -%}

    {%- set spec = operators[operator] -%}
    {%- if data_type not in spec.types -%}
        {%- set fitting = [] -%}
        {%- for name, other in operators.items() if data_type in other.types -%}
            {%- do fitting.append(name) -%}
        {%- endfor -%}
        {%- do _problem(problems, label, place,
            'operator ' ~ operator ~ ' does not apply to ' ~ data_type ~ ' '
            ~ subject, 'use one of ' ~ fitting | join(', ')) -%}
        {{ return(none) }}
    {%- endif -%}

    {%- set value = holder.get('value') -%}
    {%- if spec.value == 'none' -%}
        {%- if 'value' in holder -%}
            {%- do _problem(problems, label, place ~ '.value',
                operator ~ ' takes no value', 'remove value') -%}
        {%- endif -%}
    {%- elif spec.value == 'one' -%}
        {%- do _check_value(
            label, place ~ '.value', data_type, value, problems) -%}
    {%- elif spec.value == 'list' -%}
        {%- if value is string or value is mapping or value is not iterable
            or value | length == 0 -%}
            {%- do _problem(problems, label, place ~ '.value',
                operator ~ ' needs a list', 'write value: [a, b, ...]') -%}
        {%- else -%}
            {%- for item in value -%}
                {%- do _check_value(label,
                    place ~ '.value[' ~ loop.index0 ~ ']', data_type, item,
                    problems) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- elif spec.value == 'range' -%}
        {%- do _check_range(
            label, place ~ '.value', data_type, value, problems) -%}
    {%- else -%}
        {%- do _check_duration(label, place ~ '.value', value, problems) -%}
    {%- endif -%}
{%- endmacro %}


{% macro _check_value(label, place, data_type, value, problems) -%}
    {%- set problem = audience_literal_problem(data_type, value) -%}
    {%- if problem -%}
        {%- set fixes = {
            'text': 'write a text',
            'integer': 'write a whole number, such as 5000',
            'numeric': 'write a number, such as 12.50',
            'boolean': 'write true or false, unquoted',
            'date': 'write a date as YYYY-MM-DD',
            'timestamptz': 'write a date or an instant such as '
                ~ '2024-05-01T09:30:00+02:00 (no offset means UTC)',
        } -%}
        {%- do _problem(problems, label, place, "'" ~ value ~ "' " ~ problem,
            fixes.get(data_type, 'compare another column')) -%}
    {%- endif -%}
{%- endmacro %}


{#- between: {from: low, to: high}, both ends included. -#}
{% macro _check_range(label, place, data_type, value, problems) -%}
    {%- if value is not mapping
        or value.keys() | sort | list != ['from', 'to'] -%}
        {%- do _problem(problems, label, place, 'between needs from and to',
            'write value: {from: low, to: high}') -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set low, high = value['from'], value['to'] -%}
    {%- if audience_literal_problem(data_type, low)
        or audience_literal_problem(data_type, high) -%}
        {%- do _check_value(
            label, place ~ '.from', data_type, low, problems) -%}
        {%- do _check_value(
            label, place ~ '.to', data_type, high, problems) -%}
    {%- elif data_type in ['date', 'timestamptz']
        and audience_instant(low | string) > audience_instant(high | string)
        or data_type in ['integer', 'numeric']
        and low | float > high | float -%}
        {%- do _problem(problems, label, place,
            "from '" ~ low ~ "' is after to '" ~ high ~ "'",
            'swap them') -%}
    {%- endif -%}
{%- endmacro %}


{#- {days: N} or {hours: N}: a whole, positive number of one unit. -#}
{% macro _check_duration(label, place, value, problems) -%}
    {%- set units = audience_duration_units() -%}
    {%- set unit = (value.keys() | list)[0]
        if value is mapping and value | length == 1 else none -%}
    {%- set amount = value[unit] if unit in units else none -%}
    {%- if unit not in units -%}
        {%- do _problem(problems, label, place, "is '" ~ value ~ "'",
            'write {days: N} or {hours: N}') -%}
    {%- elif amount is sameas true or amount is sameas false
        or not modules.re.fullmatch('[0-9]{1,7}', amount | string)
        or amount | int < 1 or amount | int > units[unit] -%}
        {%- do _problem(problems, label, place,
            unit ~ " is '" ~ amount ~ "'",
            'write a whole number of ' ~ unit ~ ' from 1 to ' ~ units[unit]) -%}
    {%- endif -%}
{%- endmacro %}


{% macro _check_event(label, event, place, vocabulary, problems) -%}
    {%- set keys = ['event_type', 'dataset', 'where', 'count', 'sum', 'min',
        'max', 'within_last', 'between'] -%}
    {%- if event is not mapping -%}
        {%- do _problem(problems, label, place, 'is not a mapping',
            'write event: {event_type: ..., within_last: ...} with any of '
            ~ keys | join(', ')) -%}
        {{ return(none) }}
    {%- endif -%}
    {%- for key in event if key not in keys -%}
        {%- do _problem(problems, label, place ~ '.' ~ key,
            "key '" ~ key ~ "' is unknown in an event condition",
            'use only ' ~ keys | join(', ')) -%}
    {%- endfor -%}

    {%- do _check_event_source(label, event, place, vocabulary, problems) -%}
    {%- if 'where' in event -%}
        {%- do _check_event_filters(
            label, event.where, place ~ '.where', vocabulary, problems) -%}
    {%- endif -%}
    {%- do _check_event_threshold(label, event, place, vocabulary, problems) -%}
    {%- do _check_event_window(label, event, place, problems) -%}
{%- endmacro %}


{#- dataset and event_type: both optional, both checked against the
    declarations. -#}
{% macro _check_event_source(label, event, place, vocabulary, problems) -%}
    {%- set datasets = vocabulary.datasets -%}
    {%- set dataset = event.get('dataset') -%}
    {%- if 'dataset' in event and (dataset is not string
        or dataset not in datasets) -%}
        {%- do _problem(problems, label, place ~ '.dataset',
            "'" ~ dataset ~ "' is not a profile-enabled event dataset",
            'use one of ' ~ datasets.keys() | sort | join(', ')) -%}
        {%- set dataset = none -%}
    {%- endif -%}
    {%- if 'event_type' not in event -%}
        {{ return(none) }}
    {%- endif -%}

    {%- set event_types = [event.event_type] if event.event_type is string
        else event.event_type -%}
    {%- if event_types is mapping or event_types is not iterable
        or event_types | length == 0
        or event_types | reject('string') | list | length > 0 -%}
        {%- do _problem(problems, label, place ~ '.event_type',
            "'" ~ event.event_type ~ "' is not a text or a list of texts",
            'write event_type: purchase or event_type: [a, b]') -%}
        {{ return(none) }}
    {%- endif -%}

    {%- set known = namespace(types=[], complete=true) -%}
    {%- for name, types in datasets.items()
        if dataset is none or name == dataset -%}
        {%- if types is none -%}
            {%- set known.complete = false -%}
        {%- else -%}
            {%- set known.types = known.types + types -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for event_type in event_types
        if known.complete and event_type not in known.types -%}
        {%- do _problem(problems, label, place ~ '.event_type',
            "'" ~ event_type ~ "' is not an event type of "
            ~ ("dataset " ~ dataset if dataset else 'any event dataset'),
            'use one of ' ~ known.types | unique | sort | join(', ')) -%}
    {%- endfor -%}
{%- endmacro %}


{% macro _check_event_filters(label, filters, place, vocabulary, problems) -%}
    {%- if filters is string or filters is mapping or filters is not iterable
        or filters | length == 0 -%}
        {%- do _problem(problems, label, place, 'is not a list of filters',
            'write where: [{field: channel, operator: equals, '
            ~ 'value: store}]') -%}
        {{ return(none) }}
    {%- endif -%}

    {%- for filter in filters -%}
        {%- set filter_place = place ~ '[' ~ loop.index0 ~ ']' -%}
        {%- if filter is not mapping -%}
            {%- do _problem(problems, label, filter_place, 'is not a mapping',
                'write {field: ..., operator: ..., value: ...}') -%}
        {%- else -%}
            {%- for key in filter
                if key not in ['field', 'operator', 'value'] -%}
                {%- do _problem(problems, label, filter_place,
                    "key '" ~ key ~ "' is unknown in a filter",
                    'use only field, operator, value') -%}
            {%- endfor -%}
            {%- set field = filter.get('field') -%}
            {%- set data_type = vocabulary.event_fields.get(field)
                if field is string else none -%}
            {%- if field == 'occurred_at' -%}
                {%- do _problem(problems, label, filter_place ~ '.field',
                    'occurred_at is the event time',
                    'say which events count with the window: within_last '
                    ~ 'or between on the event condition') -%}
            {%- elif data_type is none -%}
                {%- do _problem(problems, label, filter_place ~ '.field',
                    "'" ~ field ~ "' is not a field of profile events",
                    'use one of ' ~ vocabulary.event_fields.keys() | sort
                    | join(', ')) -%}
            {%- endif -%}
            {%- do _check_condition(label, filter_place,
                "field '" ~ field ~ "'", data_type, filter, problems) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}


{#- One threshold: count (default gte 1), or sum, min or max of a numeric
    field, compared with one of gte, gt, lte, lt, equals. -#}
{% macro _check_event_threshold(label, event, place, vocabulary, problems) -%}
    {%- set comparisons = audience_comparisons() -%}
    {%- set thresholds = ['count', 'sum', 'min', 'max'] | select('in', event)
        | list -%}
    {%- if thresholds | length > 1 -%}
        {%- do _problem(problems, label, place,
            'has ' ~ thresholds | join(' and ') ~ ' thresholds',
            'keep one; to combine them use two event conditions under all') -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if not thresholds -%}
        {{ return(none) }}
    {%- endif -%}

    {%- set kind = thresholds[0] -%}
    {%- set threshold = event[kind] -%}
    {%- set threshold_place = place ~ '.' ~ kind -%}
    {%- set keys = comparisons.keys() | list -%}
    {%- set allowed = keys + ([] if kind == 'count' else ['field']) -%}
    {%- if threshold is not mapping -%}
        {%- do _problem(problems, label, threshold_place, 'is not a mapping',
            'write ' ~ kind ~ (': {gte: 3}' if kind == 'count'
                else ': {field: revenue_amount, gte: 200}')) -%}
        {{ return(none) }}
    {%- endif -%}

    {%- for key in threshold if key not in allowed -%}
        {%- do _problem(problems, label, threshold_place,
            "key '" ~ key ~ "' is unknown",
            'use only ' ~ allowed | join(', ')) -%}
    {%- endfor -%}
    {%- set used = keys | select('in', threshold) | list -%}
    {%- if used | length != 1 -%}
        {%- do _problem(problems, label, threshold_place,
            'compares with ' ~ (used | join(' and ') or 'nothing'),
            'give exactly one of ' ~ keys | join(', ')) -%}
    {%- elif kind == 'count' -%}
        {%- set count = threshold[used[0]] -%}
        {%- if audience_literal_problem('integer', count) or count | int < 0 -%}
            {%- do _problem(problems, label, threshold_place ~ '.' ~ used[0],
                "'" ~ count ~ "' is not a count", 'write a whole number, 0 or '
                ~ 'more') -%}
        {%- endif -%}
    {%- else -%}
        {%- do _check_value(label, threshold_place ~ '.' ~ used[0], 'numeric',
            threshold[used[0]], problems) -%}
    {%- endif -%}

    {%- if kind != 'count' -%}
        {%- set field = threshold.get('field') -%}
        {%- set numeric = [] -%}
        {%- for name, data_type in vocabulary.event_fields.items()
            if data_type in ['integer', 'numeric'] -%}
            {%- do numeric.append(name) -%}
        {%- endfor -%}
        {%- if field not in numeric -%}
            {%- do _problem(problems, label, threshold_place ~ '.field',
                "'" ~ field ~ "' is not a numeric field of profile events",
                'use one of ' ~ numeric | sort | join(', ')) -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- One window at most: within_last {days|hours: N} ending at the evaluation
    time, or between {from, to} (dates or instants; a date `to` includes that
    whole day, in UTC). -#}
{% macro _check_event_window(label, event, place, problems) -%}
    {%- if 'within_last' in event and 'between' in event -%}
        {%- do _problem(problems, label, place, 'has two windows',
            'keep one of within_last and between') -%}
    {%- endif -%}
    {%- if 'within_last' in event -%}
        {%- do _check_duration(
            label, place ~ '.within_last', event.within_last, problems) -%}
    {%- endif -%}
    {%- if 'between' in event -%}
        {%- set window = event.between -%}
        {%- set window_place = place ~ '.between' -%}
        {%- if window is not mapping
            or window.keys() | sort | list != ['from', 'to'] -%}
            {%- do _problem(problems, label, window_place,
                'needs from and to, and nothing else',
                'write between: {from: 2024-11-01, to: 2024-11-30}') -%}
        {%- elif audience_instant(window['from']) is none
            or audience_instant(window['to']) is none -%}
            {%- for end in ['from', 'to']
                if audience_instant(window[end]) is none -%}
                {%- do _problem(problems, label, window_place ~ '.' ~ end,
                    "'" ~ window[end] ~ "' is not a date or instant",
                    'write 2024-11-01 or 2024-11-01T09:00:00Z') -%}
            {%- endfor -%}
        {%- elif audience_instant(window['from'])
            >= audience_window_end(window['to']) -%}
            {%- do _problem(problems, label, window_place,
                "from '" ~ window['from'] ~ "' is not before to '"
                ~ window['to'] ~ "'", 'swap them or widen the window') -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- The instant a between window ends: a date means the end of that day. -#}
{% macro audience_window_end(value) -%}
    {%- set instant = audience_instant(value) -%}
    {%- if modules.re.fullmatch(
        '[0-9]{4}-[0-9]{2}-[0-9]{2}', value | string) -%}
        {{ return(instant + modules.datetime.timedelta(days=1)) }}
    {%- endif -%}
    {{ return(instant) }}
{%- endmacro %}


{% macro _check_audience_reference(
    label, reference, place, vocabulary, problems) -%}
    {%- if reference is not mapping or 'id' not in reference -%}
        {%- do _problem(problems, label, place, 'has no id',
            'write audience: {id: other_audience} or add within_last: '
            ~ '{days: N}') -%}
        {{ return(none) }}
    {%- endif -%}
    {%- for key in reference if key not in ['id', 'within_last'] -%}
        {%- do _problem(problems, label, place,
            "key '" ~ key ~ "' is unknown in an audience condition",
            'use only id and within_last') -%}
    {%- endfor -%}
    {%- if reference.id not in vocabulary.audience_ids -%}
        {%- do _problem(problems, label, place ~ '.id',
            "audience '" ~ reference.id ~ "' is not defined",
            'use one of ' ~ vocabulary.audience_ids | unique | sort
            | join(', ')) -%}
    {%- endif -%}
    {%- if 'within_last' in reference -%}
        {%- do _check_duration(
            label, place ~ '.within_last', reference.within_last, problems) -%}
    {%- endif -%}
{%- endmacro %}


{#- Each cycle of audiences using each other, once, starting at its smallest
    id: [a, b, a]. -#}
{% macro _audience_cycles(audiences) -%}
    {%- set uses = {} -%}
    {%- for audience in audiences
        if audience is mapping and audience.get('id') is string -%}
        {%- set used = [] -%}
        {%- do _audience_references(audience.get('rule'), used) -%}
        {%- if audience.id not in uses -%}
            {%- do uses.update({audience.id: used}) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- set cycles = [] -%}
    {%- for audience_id in uses | sort -%}
        {%- do _follow_references([audience_id], uses, cycles) -%}
    {%- endfor -%}
    {{ return(cycles) }}
{%- endmacro %}


{% macro _follow_references(path, uses, cycles) -%}
    {%- for next_id in uses.get(path[-1], []) | unique -%}
        {%- if next_id == path[0] -%}
            {%- do cycles.append(path + [next_id]) -%}
        {%- elif next_id not in path and next_id > path[0] -%}
            {%- do _follow_references(path + [next_id], uses, cycles) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endmacro %}


{#- The ids of the audiences a rule tree uses, malformed nodes skipped. -#}
{% macro _audience_references(node, used) -%}
    {%- if node is not mapping -%}
        {{ return(none) }}
    {%- endif -%}
    {%- for kind in ['all', 'any'] if node.get(kind) is iterable
        and node.get(kind) is not string and node.get(kind) is not mapping -%}
        {%- for child in node[kind] -%}
            {%- do _audience_references(child, used) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- if 'not' in node -%}
        {%- do _audience_references(node['not'], used) -%}
    {%- endif -%}
    {%- if node.get('audience') is mapping
        and node.audience.get('id') is string -%}
        {%- do used.append(node.audience.id) -%}
    {%- endif -%}
{%- endmacro %}
