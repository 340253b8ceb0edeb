{#- The declared profile attributes across datasets, one entry per column
    name: a name declared in two datasets is one attribute merged across both.
    Conflicting data types would make that merge meaningless, so they stop the
    build. -#}
{% macro profile_attribute_columns(datasets) -%}
    {%- set attributes = [] -%}
    {%- set types_by_name = {} -%}

    {%- for dataset in datasets -%}
        {%- for column in dataset.columns if column.profile_attribute -%}
            {%- if column.name not in types_by_name -%}
                {%- do types_by_name.update({column.name: column.data_type}) -%}
                {%- do attributes.append(column) -%}
            {%- elif types_by_name[column.name] != column.data_type -%}
                {{ exceptions.raise_compiler_error(
                    "profile attribute '" ~ column.name ~ "' is declared as "
                    ~ types_by_name[column.name] ~ " and, in dataset '"
                    ~ dataset.name ~ "', as " ~ column.data_type
                    ~ "; declare it with one data_type everywhere."
                ) }}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}

    {{ return(attributes) }}
{%- endmacro %}
