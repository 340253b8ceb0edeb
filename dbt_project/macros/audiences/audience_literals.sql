{#- Values in audience definitions become SQL literals of the column's declared
    type, and only after their shape is checked here, so a definition can never
    inject SQL: text is quoted with quotes doubled; numbers, booleans, dates
    and instants are rebuilt from what the patterns matched. -#}

{#- Why a value cannot be a literal of the type, or '' when it can. -#}
{% macro audience_literal_problem(data_type, value) -%}
    {%- set is_boolean = value is sameas true or value is sameas false -%}
    {%- set is_scalar = (value is string or value is number)
        and not is_boolean -%}
    {%- set text = value | string -%}

    {%- if value is none -%}
        {%- set problem = 'has no value' -%}
    {%- elif value is mapping or (value is iterable and value is not string) -%}
        {%- set problem = 'is a list or mapping where one value belongs' -%}
    {%- elif data_type == 'text' -%}
        {%- set problem = '' if is_scalar else "is not text" -%}
    {%- elif data_type == 'integer' -%}
        {%- set problem = '' if is_scalar
            and modules.re.fullmatch('-?[0-9]{1,18}', text)
            else "is not a whole number" -%}
    {%- elif data_type == 'numeric' -%}
        {%- set problem = '' if is_scalar
            and modules.re.fullmatch('-?[0-9]{1,30}(\.[0-9]{1,30})?', text)
            else "is not a number" -%}
    {%- elif data_type == 'boolean' -%}
        {%- set problem = '' if is_boolean else "is not a boolean" -%}
    {%- elif data_type == 'date' -%}
        {%- set problem = ''
            if modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', text)
            and audience_instant(text) is not none
            else "is not a date" -%}
    {%- elif data_type == 'timestamptz' -%}
        {%- set problem = '' if audience_instant(text) is not none
            else "is not a date or instant" -%}
    {%- else -%}
        {%- set problem = 'has type ' ~ data_type
            ~ ', which audiences cannot compare' -%}
    {%- endif -%}
    {{ return(problem) }}
{%- endmacro %}


{#- The literal itself. Definitions are validated before compiling, so an error
    here means a caller skipped validation: stop rather than emit SQL. -#}
{% macro audience_literal(data_type, value) -%}
    {%- set problem = audience_literal_problem(data_type, value) -%}
    {%- if problem -%}
        {{ exceptions.raise_compiler_error(
            "audience value '" ~ value ~ "' " ~ problem
            ~ "; it cannot become a " ~ data_type ~ " literal.") }}
    {%- endif -%}

    {%- if data_type == 'text' -%}
        '{{ value | string | replace("'", "''") }}'
    {%- elif data_type in ['integer', 'numeric'] -%}
        {{ value | string }}
    {%- elif data_type == 'boolean' -%}
        {{ 'true' if value else 'false' }}
    {%- elif data_type == 'date' -%}
        date '{{ audience_instant(value | string).date().isoformat() }}'
    {%- else -%}
        timestamptz '{{ audience_instant(value | string).isoformat() }}'
    {%- endif -%}
{%- endmacro %}


{#- A date or ISO 8601 instant as an aware datetime (UTC when no offset is
    written), or none when the text is not one or names no real day or time. -#}
{% macro audience_instant(text) -%}
    {%- set match = modules.re.fullmatch(
        '([0-9]{4})-([0-9]{2})-([0-9]{2})'
        ~ '(?:[ T]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?)?'
        ~ '(Z|([+-])([0-9]{2})(?::?([0-9]{2}))?)?', text | string) -%}
    {%- if not match -%}
        {{ return(none) }}
    {%- endif -%}

    {%- set parts = match.groups() -%}
    {%- set year, month = parts[0] | int, parts[1] | int -%}
    {%- set day = parts[2] | int -%}
    {%- set hour, minute = (parts[3] or 0) | int, (parts[4] or 0) | int -%}
    {%- set second = (parts[5] or 0) | int -%}
    {%- set microsecond = ((parts[6] or '0') ~ '00000')[:6] | int -%}
    {%- set offset_hours = (parts[9] or 0) | int -%}
    {%- set offset_minutes = (parts[10] or 0) | int -%}
    {%- set leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) -%}
    {%- set month_days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30,
        31, 30, 31] -%}
    {%- if year < 1 or month < 1 or month > 12 or day < 1
        or day > month_days[month - 1] or hour > 23 or minute > 59
        or second > 59 or offset_hours > 15 or offset_minutes > 59 -%}
        {{ return(none) }}
    {%- endif -%}

    {%- set offset = offset_hours * 60 + offset_minutes -%}
    {{ return(modules.datetime.datetime(year, month, day, hour, minute, second,
        microsecond, modules.pytz.FixedOffset(
            -offset if parts[8] == '-' else offset))) }}
{%- endmacro %}
