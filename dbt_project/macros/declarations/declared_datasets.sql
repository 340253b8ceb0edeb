{#- Readers of the dataset declarations (the `config.meta.dataset` of each
    staging source), so the identity graph, the profile attribute merge and the
    profile events are generated from what is declared, never hand-listed.

    dbt builds `graph` only after parsing, so these macros return nothing while
    parsing; models call `depends_on_staging_models()` to give dbt their
    parse-time dependencies. -#}

{#- The warehouse type each declared data_type is promoted to. -#}
{% macro declared_sql_type(data_type) -%}
    {%- set types = {
        'text': 'text',
        'integer': 'bigint',
        'numeric': 'numeric',
        'boolean': 'boolean',
        'date': 'date',
        'timestamptz': 'timestamptz',
    } -%}
    {{ types.get(data_type, 'text') }}
{%- endmacro %}


{#- Every declared dataset as a dict: name, source_name, kind, record_key,
    timestamp_column, event_type, event_type_column, profile_enabled, columns
    (name, data_type, identity, profile_attribute, pii, allowed_values) and
    staging_model. -#}
{% macro declared_datasets(profile_enabled_only=true, kind=none) -%}
    {%- set datasets = [] -%}
    {%- if not execute -%}
        {{ return(datasets) }}
    {%- endif -%}

    {%- for source in graph.sources.values() | sort(attribute='unique_id') -%}
        {%- set declaration = (source.config.meta or {}).get('dataset') -%}
        {%- if declaration is mapping
            and (declaration.get('profile_enabled', false)
                 or not profile_enabled_only)
            and (kind is none or declaration.get('kind') == kind) -%}
            {%- do datasets.append(_declared_dataset(source, declaration)) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(datasets) }}
{%- endmacro %}


{% macro _declared_dataset(source, declaration) -%}
    {%- set columns = [] -%}
    {%- for column in source.columns.values() -%}
        {%- set meta = (column.config or {}).get('meta') or column.meta or {} -%}
        {%- do columns.append({
            'name': column.name,
            'data_type': column.data_type or 'text',
            'identity': meta.get('identity'),
            'profile_attribute': meta.get('profile_attribute', false),
            'pii': meta.get('pii', false),
            'allowed_values': meta.get('allowed_values'),
        }) -%}
    {%- endfor -%}

    {{ return({
        'name': source.name,
        'source_name': source.source_name,
        'kind': declaration.get('kind'),
        'profile_enabled': declaration.get('profile_enabled', false),
        'record_key': declaration.get('record_key'),
        'timestamp_column': declaration.get('timestamp_column'),
        'event_type': declaration.get('event_type'),
        'event_type_column': declaration.get('event_type_column'),
        'columns': columns,
        'staging_model': staging_model_of(source),
    }) }}
{%- endmacro %}


{#- The one staging model that reads a source; a dataset without one cannot
    feed profiles, which is a mistake worth stopping the build for. -#}
{% macro staging_model_of(source) -%}
    {%- set readers = [] -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model'
            and node.name.startswith('stg_')
            and source.unique_id in node.depends_on.nodes -%}
            {%- do readers.append(node.name) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- if readers | length != 1 -%}
        {{ exceptions.raise_compiler_error(
            "dataset '" ~ source.name ~ "' is read by staging models "
            ~ readers | string ~ "; give it exactly one staging model "
            ~ "stg_" ~ source.source_name ~ "__<entity>s that selects from "
            ~ "source('" ~ source.source_name ~ "', '" ~ source.name ~ "')."
        ) }}
    {%- endif -%}
    {{ return(readers[0]) }}
{%- endmacro %}


{#- Parse-time dependencies on every staging model listed in var
    `staging_models`: dbt cannot see sources while parsing, so models that are
    generated from the declarations declare their inputs this way. At run time
    `staging_relation` checks that no declared dataset was left out. -#}
{% macro depends_on_staging_models() -%}
    {%- for model_name in var('staging_models') %}
-- depends_on: {{ ref(model_name) }}
    {%- endfor %}
{%- endmacro %}


{#- The relation of a dataset's staging model, through ref() so lineage shows. -#}
{% macro staging_relation(dataset) -%}
    {%- if dataset.staging_model not in var('staging_models') -%}
        {{ exceptions.raise_compiler_error(
            "dataset '" ~ dataset.name ~ "' is declared but its staging model '"
            ~ dataset.staging_model ~ "' is missing from var staging_models in "
            ~ "dbt_project.yml; add it there so " ~ model.name
            ~ " is built after it."
        ) }}
    {%- endif -%}
    {{ return(ref(dataset.staging_model)) }}
{%- endmacro %}
