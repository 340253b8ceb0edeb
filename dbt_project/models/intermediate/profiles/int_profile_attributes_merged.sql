{#- Generated from the dataset declarations: every column declared
    `profile_attribute` in a profile-enabled record dataset, merged per profile
    by most recent non-null value by record timestamp. -#}
{{ depends_on_staging_models() }}

{{ merged_profile_attributes() }}
